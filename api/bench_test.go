package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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
			if !benchPost(b, h, "/v1/viewers/heartbeat", body, "") {
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
			if !benchPost(b, h, "/v1/viewers/heartbeat", body, "") {
				return
			}
		}
	})
}

// BenchmarkJoinHandler is one join through the whole handler (routing,
// metrics, body, validation, the Redis step, write-behind, the answer) of a
// new viewer, over 200 stages, callers in parallel; allocations per request
// are the figure to watch.
func BenchmarkJoinHandler(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := events.NewStream(rdb, prefix, 120*time.Second)
	h := api.NewServer(api.Config{Stream: s, Registry: ops.NewRegistry(), WriteBehind: s.NewWriteBehind(0)})
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"stage_arn":"%s%d","user_id":"u%d"}`, stage[:len(stage)-1], i%200, i)
			if !benchPost(b, h, "/v1/viewers/join", body, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0 Safari/537.36") {
				return
			}
		}
	})
}

// benchPost posts the JSON body to path of h (with a User-Agent, if ua is not
// empty) and reports whether it was answered 200.
func benchPost(b *testing.B, h http.Handler, path, body, ua string) bool {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Errorf("status %d: %s", rec.Code, rec.Body)
		return false
	}
	return true
}
