package api_test

import (
	"context"
	"encoding/json"
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
	// Every heartbeat runs the step, as a player's every 30 s does; one
	// sooner is answered from memory (BenchmarkHeartbeatSkipped).
	h := api.NewServer(api.Config{Stream: s, Registry: ops.NewRegistry(), NoHeartbeatSkip: true})
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

// BenchmarkHeartbeatSkipped is a heartbeat answered from memory (sooner than
// half the interval after the session's last step).
func BenchmarkHeartbeatSkipped(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := events.NewStream(rdb, prefix, 120*time.Second)
	h := api.NewServer(api.Config{Stream: s, Registry: ops.NewRegistry()})
	req := httptest.NewRequest(http.MethodPost, "/v1/viewers/join", strings.NewReader(`{"stage_arn":"`+stage+`","user_id":"u"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var j struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &j); err != nil || rec.Code != 200 {
		b.Fatalf("join: %d %s", rec.Code, rec.Body)
	}
	body := `{"session_id":"` + j.SessionID + `"}`
	b.ReportAllocs()
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
