package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

func newSkipHarness(t *testing.T) (*harness, *prometheus.Registry) {
	t.Helper()
	reg := ops.NewRegistry()
	return newHarness(t, func(c *api.Config) { c.Registry = reg }), reg
}

func (h *harness) heartbeat(sid string) answer {
	h.t.Helper()
	return h.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid})
}

// TestHeartbeatLoopRunsOneStepPerHalfInterval: a client heartbeating every
// second for a minute (interval 30 s, half 15 s) costs one Redis step per 15
// s; each is answered 200 with the count; presence is refreshed every half
// interval.
func TestHeartbeatLoopRunsOneStepPerHalfInterval(t *testing.T) {
	h, reg := newSkipHarness(t)
	h.join("bob") // another viewer, so the cached count is visibly 2
	start := h.clock.Now()
	sid := h.join("alice").body["session_id"].(string)
	for i := range 60 {
		a := h.heartbeat(sid)
		if a.status != 200 || a.body["viewers"] != float64(2) {
			t.Fatalf("heartbeat %d: %d %v", i, a.status, a.body)
		}
		h.clock.Add(time.Second)
	}
	msgs, err := h.rdb.XRange(context.Background(), h.stream.Keys().Stream(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64 // seconds after the join of each heartbeat step
	for _, m := range msgs {
		if e, _ := events.Decode(m.ID, m.Values); e.Type == events.Heartbeat {
			steps = append(steps, e.At.Sub(start).Milliseconds()/1000)
		}
	}
	if len(steps) != 3 || steps[0] != 15 || steps[1] != 30 || steps[2] != 45 {
		t.Fatalf("heartbeat steps at %v s after the join, want [15 30 45]", steps)
	}
	if got := testutil.Metric(t, reg, "viewpulse_heartbeats_skipped_total"); got != 57 {
		t.Fatalf("skipped = %v, want 57", got)
	}
	seen, err := h.rdb.ZScore(context.Background(), h.stream.Keys().Present(stage), "alice").Result()
	if err != nil || int64(seen) != start.Add(45*time.Second).UnixMilli() {
		t.Fatalf("presence of alice at %v (%v), want the step at +45 s", seen, err)
	}
}

// TestHeartbeatAfterLeaveIs404: a leave forgets the session at once.
func TestHeartbeatAfterLeaveIs404(t *testing.T) {
	h, _ := newSkipHarness(t)
	sid := h.join("carol").body["session_id"].(string)
	if a := h.heartbeat(sid); a.status != 200 {
		t.Fatalf("heartbeat: %d %v", a.status, a.body)
	}
	if a := h.post("/v1/viewers/leave", map[string]string{"session_id": sid}); a.status != 200 || a.body["closed"] != true {
		t.Fatalf("leave: %d %v", a.status, a.body)
	}
	if a := h.heartbeat(sid); a.status != 404 || a.code() != "session_not_found" {
		t.Fatalf("heartbeat after leave: %d %v, want 404", a.status, a.body)
	}
}

// TestHeartbeatSkipHoldsOnlyRealSessions: an unknown session is answered 404
// every time and never held; a real one is held until half an interval has
// passed twice, then dropped.
func TestHeartbeatSkipHoldsOnlyRealSessions(t *testing.T) {
	h, reg := newSkipHarness(t)
	held := func() float64 { return testutil.Metric(t, reg, "viewpulse_heartbeat_skip_sessions") }
	invented := ulid.Make().String()
	for i := range 3 {
		if a := h.heartbeat(invented); a.status != 404 {
			t.Fatalf("invented session, heartbeat %d: %d %v", i, a.status, a.body)
		}
	}
	if n := held(); n != 0 {
		t.Fatalf("%v sessions held after heartbeats of an invented one", n)
	}
	sid := h.join("dave").body["session_id"].(string)
	if n := held(); n != 1 {
		t.Fatalf("%v sessions held after a join, want 1", n)
	}
	// Closed by another process: this one may answer from memory for less
	// than half an interval, then asks Redis, learns 404 and forgets.
	if _, err := h.stream.Leave(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(15 * time.Second)
	for i := range 2 {
		if a := h.heartbeat(sid); a.status != 404 {
			t.Fatalf("heartbeat %d of a session closed elsewhere, 15 s on: %d %v", i, a.status, a.body)
		}
	}
	h.join("erin")
	if n := held(); n != 1 {
		t.Fatalf("%v sessions held, want erin's only", n)
	}
	h.clock.Add(30 * time.Second)
	if n := held(); n != 0 {
		t.Fatalf("%v sessions held an interval after their last step, want 0", n)
	}
}

// TestNoHeartbeatSkip: HEARTBEAT_SKIP=false runs the step for every
// heartbeat.
func TestNoHeartbeatSkip(t *testing.T) {
	h := newHarness(t, func(c *api.Config) { c.NoHeartbeatSkip = true })
	sid := h.join("fay").body["session_id"].(string)
	for i := range 5 {
		if a := h.heartbeat(sid); a.status != 200 {
			t.Fatalf("heartbeat %d: %d %v", i, a.status, a.body)
		}
	}
	if n := h.streamLen(); n != 6 {
		t.Fatalf("stream holds %d entries, want the join and 5 heartbeats", n)
	}
}
