package api

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ratelimit"
	vptest "github.com/viewpulse/viewpulse/internal/testutil"
)

func TestRateLimitedRetryAfterRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0: 1, time.Microsecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 6 * time.Second: 6, 59*time.Second + 1: 60,
	} {
		if e := rateLimited(d); e.RetryAfter != want || e.Status != 429 || e.Code != "rate_limited" {
			t.Errorf("rateLimited(%s) = %+v, want Retry-After %d", d, e, want)
		}
	}
}

// TestLimitByAPIKey: the middleware (for POST /v1/tokens) limits each bearer
// key on its own, here on a test-only route.
func TestLimitByAPIKey(t *testing.T) {
	rdb, prefix := vptest.Redis(t)
	srv := &server{Config: Config{Stream: events.NewStream(rdb, prefix, time.Minute), RedisTimeout: time.Second,
		Log:    slog.New(slog.DiscardHandler),
		Limits: RateLimits{Limiter: ratelimit.New(rdb, prefix), TokenPerKey: ratelimit.Rate{N: 2, Per: time.Hour}}}}
	srv.beats, srv.trust = newBeatCache(time.Minute), newTrustMetrics(srv)
	e := echo.New()
	e.HTTPErrorHandler = srv.errorHandler
	e.POST("/test/limited", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, srv.limitByAPIKey)
	post := func(key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/test/limited", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	for i := range 2 {
		if rec := post("key-a"); rec.Code != 204 {
			t.Fatalf("key-a %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := post("key-a")
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"rate_limited"`) {
		t.Fatalf("key-a over its rate: %d %s (Retry-After %q)", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	if rec := post("key-b"); rec.Code != 204 {
		t.Fatalf("key-b: %d %s", rec.Code, rec.Body)
	}
	if got := testutil.ToFloat64(srv.trust.rejected.WithLabelValues(scopeToken)); got != 1 {
		t.Fatalf("rejected{token} = %v", got)
	}
	// The key is in Redis only as a hash of its hash.
	sum := sha256.Sum256([]byte("key-a"))
	key, err := srv.Limits.Limiter.Key(t.Context(), scopeToken, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(t.Context(), key).Result(); err != nil || n != 1 || strings.Contains(key, "key-a") {
		t.Fatalf("limiter key %q exists=%d %v", key, n, err)
	}
}
