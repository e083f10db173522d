package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// BenchmarkHeartbeatHandler is one heartbeat through the whole handler
// (routing, metrics, body, validation, the Redis step, the answer), callers
// in parallel; allocations per request are the figure to watch.
func BenchmarkHeartbeatHandler(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := events.NewStream(rdb, prefix, 120*time.Second)
	s.RecordEvery = 5 * time.Minute
	h := api.NewServer(api.Config{Stream: s, Registry: ops.NewRegistry()})
	j, err := s.Join(context.Background(), events.JoinRequest{Stage: stage, User: "u"})
	if err != nil {
		b.Fatal(err)
	}
	body := `{"session_id":"` + j.Session + `"}`
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/v1/viewers/heartbeat", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
}
