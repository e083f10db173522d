package api_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// wbServer is one ingest process with presence write-behind: its own cache
// over a stream of the shared keys and clock. Flushes are run by the tests,
// not by a loop, so that every state between them is seen.
type wbServer struct {
	*harness
	wb  *events.WriteBehind
	reg *prometheus.Registry
}

// newWriteBehind serves h's keys through another process with write-behind
// (record interval 5 minutes, timeout 120 s, the default margin of 5 s).
// countAge replaces the count's freshness bound (0: the default).
func newWriteBehind(t *testing.T, rdb redis.UniversalClient, prefix string, clock *testutil.Clock, countAge time.Duration) *wbServer {
	t.Helper()
	s := events.NewStream(rdb, prefix, 120*time.Second)
	s.Now = clock.Now
	s.RecordEvery = 5 * time.Minute
	wb := s.NewWriteBehind(0)
	if countAge > 0 {
		wb.CountMaxAge = countAge
	}
	reg := ops.NewRegistry()
	srv := httptest.NewServer(api.NewServer(api.Config{Stream: s, RedisTimeout: 500 * time.Millisecond,
		Registry: reg, WriteBehind: wb, NoHeartbeatSkip: true}))
	t.Cleanup(srv.Close)
	return &wbServer{harness: &harness{t: t, srv: srv, stream: s, rdb: rdb, clock: clock}, wb: wb, reg: reg}
}

func (w *wbServer) flush() {
	w.t.Helper()
	if err := w.wb.Flush(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wbServer) metric(name string) float64 { return testutil.Metric(w.t, w.reg, name) }

func (h *harness) presence(user string) (int64, bool) {
	h.t.Helper()
	s, err := h.rdb.ZScore(context.Background(), h.stream.Keys().Present(stage), user).Result()
	if err == redis.Nil {
		return 0, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return int64(s), true
}

// TestWriteBehindAnswersFromMemoryThenFlushes: a heartbeat that records no
// event is answered 200 with the count, appends nothing, and reaches Redis
// with the next flush, with its own time; the stage's activity too.
func TestWriteBehindAnswersFromMemoryThenFlushes(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	clock := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	w := newWriteBehind(t, rdb, prefix, clock, time.Hour)
	w.join("bob")
	joined := clock.Now()
	sid := w.join("alice").body["session_id"].(string)
	clock.Add(30 * time.Second)
	beat := clock.Now()
	if a := w.heartbeat(sid); a.status != 200 || num(a.body["viewers"]) != 2 {
		t.Fatalf("heartbeat = %d %v", a.status, a.body)
	}
	if got := w.metric("viewpulse_write_behind_hits_total"); got != 1 {
		t.Fatalf("hits = %v, want 1", got)
	}
	if n := w.streamLen(); n != 2 {
		t.Fatalf("stream holds %d events, want the two joins", n)
	}
	if at, _ := w.presence("alice"); at != joined.UnixMilli() {
		t.Fatalf("presence before the flush at %d, want the join's %d", at, joined.UnixMilli())
	}
	if got := w.metric("viewpulse_write_behind_pending"); got != 1 {
		t.Fatalf("pending = %v, want 1", got)
	}
	clock.Add(100 * time.Millisecond)
	w.flush()
	if at, _ := w.presence("alice"); at != beat.UnixMilli() {
		t.Fatalf("presence after the flush at %d, want the heartbeat's %d", at, beat.UnixMilli())
	}
	last, err := rdb.ZScore(context.Background(), w.stream.Keys().Stages(), stage).Result()
	if err != nil || int64(last) != beat.UnixMilli() {
		t.Fatalf("stage activity %v (%v), want the heartbeat's %d", last, err, beat.UnixMilli())
	}
	if got := w.metric("viewpulse_write_behind_flushed_total"); got != 1 {
		t.Fatalf("flushed = %v, want 1", got)
	}
	if n := w.streamLen(); n != 2 {
		t.Fatalf("the flush appended: %d events", n)
	}
}

// TestWriteBehindUnknownOrExpiredIs404: an invented session ID is 404 every
// time (and never cached); a session older than the timeout less the margin
// takes the step, and one past the timeout is 404 with its timeout event.
func TestWriteBehindUnknownOrExpiredIs404(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	clock := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	w := newWriteBehind(t, rdb, prefix, clock, time.Hour)
	invented := ulid.Make().String() + "00" + events.UserBucket("x") + events.StageHash(stage)
	for i := range 2 {
		if a := w.heartbeat(invented); a.status != 404 || a.code() != "session_not_found" {
			t.Fatalf("invented session, try %d: %d %v", i, a.status, a.body)
		}
	}
	sid := w.join("carol").body["session_id"].(string)
	clock.Add(116 * time.Second) // within the timeout, past timeout - margin
	if a := w.heartbeat(sid); a.status != 200 {
		t.Fatalf("heartbeat at +116 s = %d %v", a.status, a.body)
	}
	if at, _ := w.presence("carol"); at != clock.Now().UnixMilli() {
		t.Fatal("the heartbeat near the timeout did not take its step")
	}
	clock.Add(121 * time.Second)
	if a := w.heartbeat(sid); a.status != 404 {
		t.Fatalf("heartbeat past the timeout = %d %v", a.status, a.body)
	}
	if e := w.lastEvent(); e.Type != events.Timeout || e.Session != sid {
		t.Fatalf("last event %+v, want carol's timeout", e)
	}
	if a := w.heartbeat(sid); a.status != 404 {
		t.Fatalf("heartbeat after the timeout = %d", a.status)
	}
	if hits, misses := w.metric("viewpulse_write_behind_hits_total"), w.metric("viewpulse_write_behind_misses_total"); hits != 0 || misses != 5 {
		t.Fatalf("hits %v misses %v, want 0 and 5", hits, misses)
	}
}

// TestWriteBehindRecordDueTakesTheStep: every heartbeat event is still
// appended by its own step: heartbeats every 30 s for 11 minutes give the
// events of the 5-minute record intervals, exactly as without write-behind.
func TestWriteBehindRecordDueTakesTheStep(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	clock := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	w := newWriteBehind(t, rdb, prefix, clock, time.Hour)
	start := clock.Now()
	sid := w.join("dave").body["session_id"].(string)
	for range 22 {
		clock.Add(30 * time.Second)
		if a := w.heartbeat(sid); a.status != 200 {
			t.Fatalf("heartbeat: %d %v", a.status, a.body)
		}
		w.flush()
	}
	msgs, err := rdb.XRange(context.Background(), w.stream.Keys().Stream(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var at []int64
	for _, m := range msgs {
		if e, _ := events.Decode(m.ID, m.Values); e.Type == events.Heartbeat {
			at = append(at, e.At.Sub(start).Milliseconds()/1000)
		}
	}
	if fmt.Sprint(at) != "[300 600]" {
		t.Fatalf("heartbeat events at %v s, want [300 600]", at)
	}
	if hits := w.metric("viewpulse_write_behind_hits_total"); hits != 20 {
		t.Fatalf("hits = %v, want 20 (22 heartbeats, 2 recorded)", hits)
	}
}

// TestWriteBehindStaleCountTakesTheStep: a count older than CountMaxAge is
// not given out; the step refreshes it.
func TestWriteBehindStaleCountTakesTheStep(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	clock := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	w := newWriteBehind(t, rdb, prefix, clock, 0)
	sid := w.join("erin").body["session_id"].(string)
	clock.Add(time.Second)
	if a := w.heartbeat(sid); a.status != 200 || w.metric("viewpulse_write_behind_hits_total") != 1 {
		t.Fatalf("heartbeat 1 s after the join: %d, hits %v", a.status, w.metric("viewpulse_write_behind_hits_total"))
	}
	w.join("frank") // through the step: erin's cached count is now 1 behind
	clock.Add(3 * time.Second)
	if a := w.heartbeat(sid); a.status != 200 || num(a.body["viewers"]) != 2 {
		t.Fatalf("heartbeat with a stale count: %d %v, want the step's count 2", a.status, a.body)
	}
	if got := w.metric("viewpulse_write_behind_misses_total"); got != 1 {
		t.Fatalf("misses = %v, want 1", got)
	}
}

// TestWriteBehindFlushNeverResurrects: a session left through another
// process is answered from memory at most until this process's next flush,
// which finds it gone, writes nothing for it and forgets it: the next
// heartbeat is 404, and nothing of the session is left in Redis.
func TestWriteBehindFlushNeverResurrects(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	clock := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	a := newWriteBehind(t, rdb, prefix, clock, time.Hour)
	b := newWriteBehind(t, rdb, prefix, clock, time.Hour)
	sid := a.join("gina").body["session_id"].(string)
	clock.Add(10 * time.Second)
	if r := a.heartbeat(sid); r.status != 200 {
		t.Fatalf("heartbeat: %d", r.status)
	}
	if r := b.post("/v1/viewers/leave", map[string]string{"session_id": sid}); r.status != 200 || r.body["closed"] != true {
		t.Fatalf("leave through the other process: %d %v", r.status, r.body)
	}
	clock.Add(10 * time.Second)
	if r := a.heartbeat(sid); r.status != 200 {
		t.Fatalf("heartbeat within the flush interval after the leave: %d", r.status)
	}
	a.flush()
	if got := a.metric("viewpulse_write_behind_gone_total"); got != 1 {
		t.Fatalf("gone = %v, want 1", got)
	}
	if _, ok := a.presence("gina"); ok {
		t.Fatal("the flush brought a left session's presence back")
	}
	if n, _ := rdb.HLen(context.Background(), a.stream.Keys().Members(stage)).Result(); n != 0 {
		t.Fatalf("members hash holds %d entries", n)
	}
	if r := a.heartbeat(sid); r.status != 404 {
		t.Fatalf("heartbeat after the flush found it gone: %d, want 404", r.status)
	}
	if n := a.streamLen(); n != 2 {
		t.Fatalf("stream holds %d events, want join and leave", n)
	}
}

// TestWriteBehindTwoProcessesKeepTheCountExact: 60 viewers join, heartbeat
// and leave through two processes at random for 10 simulated minutes with
// flushes in between; 20 of them go silent halfway (those not left by then). The live count matches
// the model at every flush, the silent ones leave it within the timeout
// (the sweep closes them), and the stream holds only joins, leaves,
// timeouts and the recorded heartbeats.
func TestWriteBehindTwoProcessesKeepTheCountExact(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	clock := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	procs := []*wbServer{newWriteBehind(t, rdb, prefix, clock, 0), newWriteBehind(t, rdb, prefix, clock, 0)}
	rng := rand.New(rand.NewPCG(1, 2))
	type viewer struct {
		sid    string
		silent bool
		phase  int
	}
	present := map[string]*viewer{}
	for i := range 60 {
		u := fmt.Sprint("v", i)
		present[u] = &viewer{sid: procs[i%2].join(u).body["session_id"].(string), silent: i < 20, phase: rng.IntN(30)}
	}
	ctx := context.Background()
	for sec := 1; sec <= 600; sec++ {
		clock.Add(time.Second)
		for u, v := range present {
			if v.silent && sec > 300 {
				continue
			}
			// each viewer heartbeats every 30 s, through either process
			if (sec+v.phase)%30 != 0 {
				continue
			}
			p := procs[rng.IntN(2)]
			if rng.IntN(40) == 0 {
				if r := p.post("/v1/viewers/leave", map[string]string{"session_id": v.sid}); r.status != 200 {
					t.Fatalf("leave %s: %d", u, r.status)
				}
				delete(present, u)
				continue
			}
			if r := p.heartbeat(v.sid); r.status != 200 {
				t.Fatalf("second %d: heartbeat %s: %d %v", sec, u, r.status, r.body)
			}
		}
		if sec%5 == 0 { // a flush every 250 ms of many heartbeats, compressed
			for _, p := range procs {
				p.flush()
			}
			if sec > 300 && sec%60 == 0 {
				if _, err := procs[0].stream.Sweep(ctx, stage, 1000, clock.Now().Add(-time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			n, err := procs[0].stream.Count(ctx, stage)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, v := range present {
				// a silent viewer counts until the timeout has passed
				if !v.silent || sec <= 300+120 {
					want++
				}
			}
			if sec > 300 && sec <= 300+125 {
				continue // silent viewers leaving: their last heartbeat times differ
			}
			if n != int64(want) {
				t.Fatalf("second %d: count %d, want %d", sec, n, want)
			}
		}
	}
	var hits float64
	for _, p := range procs {
		hits += p.metric("viewpulse_write_behind_hits_total")
	}
	if hits < 300 { // about 40 %: the other process, or a count older than 2 s, takes the step
		t.Fatalf("only %v heartbeats answered from memory", hits)
	}
	msgs, err := rdb.XRange(ctx, procs[0].stream.Keys().Stream(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	types := map[events.Type]int{}
	for _, m := range msgs {
		e, _ := events.Decode(m.ID, m.Values)
		types[e.Type]++
	}
	silent := 0
	for _, v := range present {
		if v.silent {
			silent++
		}
	}
	if types[events.Timeout] != silent || types[events.Leave] != 60-len(present) {
		t.Fatalf("events %v, want %d timeouts and %d leaves", types, silent, 60-len(present))
	}
	// 40 viewers heartbeating for 10 minutes record at most 2 intervals each
	if types[events.Heartbeat] > 2*40+2*20 {
		t.Fatalf("events %v: more heartbeats recorded than record intervals", types)
	}
}

// TestWriteBehindRedisDownAnswers503: after a flush fails, heartbeats take
// their step and get 503, as every write does during the outage; what was
// answered stays queued and reaches Redis with the first flush after it.
func TestWriteBehindRedisDownAnswers503(t *testing.T) {
	_, prefix := testutil.Redis(t) // its clean-up drops the prefix
	proxy, url := testutil.ProxyURL(t, testutil.RedisURL(t))
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries = -1
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	clock := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	w := newWriteBehind(t, rdb, prefix, clock, time.Hour)
	sid := w.join("hana").body["session_id"].(string)
	clock.Add(20 * time.Second)
	answered := clock.Now()
	if a := w.heartbeat(sid); a.status != 200 {
		t.Fatalf("heartbeat: %d", a.status)
	}
	proxy.Stop()
	if err := w.wb.Flush(context.Background()); err == nil {
		t.Fatal("flush with Redis down succeeded")
	}
	clock.Add(time.Second)
	if a := w.heartbeat(sid); a.status != 503 || (a.code() != "dependency_unavailable" && a.code() != "outcome_unknown") {
		t.Fatalf("heartbeat while Redis is down: %d %v, want 503", a.status, a.body)
	}
	proxy.Start()
	w.flush()
	if at, _ := w.presence("hana"); at != answered.UnixMilli() {
		t.Fatalf("presence %d after the outage, want the answered heartbeat's %d", at, answered.UnixMilli())
	}
	clock.Add(time.Second)
	hits := w.metric("viewpulse_write_behind_hits_total")
	if a := w.heartbeat(sid); a.status != 200 || w.metric("viewpulse_write_behind_hits_total") != hits+1 {
		t.Fatalf("heartbeat after the outage: %d, hits %v → %v", a.status, hits, w.metric("viewpulse_write_behind_hits_total"))
	}
}
