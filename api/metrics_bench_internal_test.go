package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkMetricsMiddleware is a handler answering 204 with and without
// the metrics middleware: the difference is the per-request cost of
// counting and timing.
func BenchmarkMetricsMiddleware(b *testing.B) {
	for _, with := range []bool{false, true} {
		name := "bare"
		if with {
			name = "metrics"
		}
		b.Run(name, func(b *testing.B) {
			e := echo.New()
			m := newMetrics(prometheus.NewRegistry())
			if with {
				e.Use(m.middleware)
			}
			e.POST("/v1/viewers/heartbeat", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
			m.track(e)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodPost, "/v1/viewers/heartbeat", nil)
				for pb.Next() {
					rec := httptest.NewRecorder()
					e.ServeHTTP(rec, req)
					if rec.Code != http.StatusNoContent {
						b.Errorf("status %d", rec.Code)
						return
					}
				}
			})
		})
	}
}
