package snapshotter_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sourcegraph/conc"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/snapshotter"
	"github.com/viewpulse/viewpulse/store"
)

const (
	stageA  = "arn:aws:ivs:us-east-1:123456789012:stage/stageA"
	stageB  = "arn:aws:ivs:us-east-1:123456789012:stage/stageB"
	stageC  = "arn:aws:ivs:us-east-1:123456789012:stage/stageC"
	timeout = 120 * time.Second
	every   = 5 * time.Minute
)

// noon is a snapshot boundary; tests start their clock there.
var noon = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// Clock is a settable time source shared by the stream and the snapshotters.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// Env is one test's deployment: a stream under a random prefix, a fresh
// schema and one fake clock.
type Env struct {
	Stream *events.Stream
	DB     *store.DB
	Clock  *Clock
	rdb    redis.UniversalClient
	prefix string
	parts  int
}

// NewEnv returns a deployment of the test's own, of one partition on the
// test Redis, with the clock at noon.
func NewEnv(t *testing.T) *Env {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	return NewEnvOn(t, rdb, prefix, 1)
}

// NewEnvOn returns a deployment of parts partitions on rdb (a single Redis
// or a cluster) under prefix, with a fresh schema and the clock at noon.
func NewEnvOn(t *testing.T, rdb redis.UniversalClient, prefix string, parts int) *Env {
	t.Helper()
	db, err := store.Open(context.Background(), testutil.Schema(t), store.Options{MaxConns: 4, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	e := &Env{DB: db, Clock: &Clock{t: noon}, rdb: rdb, prefix: prefix, parts: parts}
	e.Stream = e.NewStream()
	return e
}

// NewStream returns another handle on the deployment's stream, as a second
// process would have.
func (e *Env) NewStream() *events.Stream {
	s := events.NewPartitionedStream(e.rdb, e.prefix, timeout, e.parts)
	s.Now = e.Clock.Now
	return s
}

// NewSnapshotter returns a snapshotter on its own stream handle and metrics
// registry, driven by the deployment's clock.
func (e *Env) NewSnapshotter(t *testing.T, cfg snapshotter.Config) (*snapshotter.Snapshotter, *prometheus.Registry) {
	t.Helper()
	if cfg.SnapshotInterval == 0 {
		cfg.SnapshotInterval = every
	}
	reg := prometheus.NewRegistry()
	s := snapshotter.New(e.NewStream(), e.DB, cfg, slog.New(slog.NewTextHandler(t.Output(), nil)), reg)
	s.Now = e.Clock.Now
	return s, reg
}

// joinAt moves the clock to at and joins user to stage.
func (e *Env) joinAt(t *testing.T, at time.Time, stage, user string) string {
	t.Helper()
	e.Clock.Set(at)
	r, err := e.Stream.Join(context.Background(), events.JoinRequest{Stage: stage, User: user})
	if err != nil {
		t.Fatal(err)
	}
	return r.Session
}

// heartbeatAt moves the clock to at and sends a heartbeat of session.
func (e *Env) heartbeatAt(t *testing.T, at time.Time, session string) {
	t.Helper()
	e.Clock.Set(at)
	if _, err := e.Stream.Heartbeat(context.Background(), session); err != nil {
		t.Fatal(err)
	}
}

// leaveAt moves the clock to at and closes session.
func (e *Env) leaveAt(t *testing.T, at time.Time, session string) {
	t.Helper()
	e.Clock.Set(at)
	if _, err := e.Stream.Leave(context.Background(), session); err != nil {
		t.Fatal(err)
	}
}

// snapshotAt wakes s at boundary b and returns how many rows it inserted.
func (e *Env) snapshotAt(t *testing.T, s *snapshotter.Snapshotter, b time.Time) int64 {
	t.Helper()
	e.Clock.Set(b)
	n, err := s.SnapshotAt(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sweepAt moves the clock to at and sweeps with s.
func (e *Env) sweepAt(t *testing.T, s *snapshotter.Snapshotter, at time.Time) {
	t.Helper()
	e.Clock.Set(at)
	if err := s.SweepOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// timeouts returns the timeout events of every partition's stream by
// session.
func (e *Env) timeouts(t *testing.T) map[string][]events.Event {
	t.Helper()
	out := map[string][]events.Event{}
	for p := range e.parts {
		msgs, err := e.rdb.XRange(context.Background(), e.Stream.PartitionKeys(p).Stream(), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			ev, err := events.Decode(m.ID, m.Values)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == events.Timeout {
				out[ev.Session] = append(out[ev.Session], ev)
			}
		}
	}
	return out
}

func (e *Env) snapshots(t *testing.T, stage string) []store.Snapshot {
	t.Helper()
	rows, err := e.DB.Snapshots(context.Background(), stage, noon.Add(-24*time.Hour), noon.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func (e *Env) count(t *testing.T, stage string) int64 {
	t.Helper()
	n, err := e.Stream.Count(context.Background(), stage)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSilentViewerTimedOutOnceAtLastHeartbeat(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	s, reg := e.NewSnapshotter(t, snapshotter.Config{})
	sid := e.joinAt(t, noon, stageA, "u1")
	lastBeat := noon.Add(30 * time.Second)
	e.heartbeatAt(t, lastBeat, sid)

	e.sweepAt(t, s, lastBeat.Add(timeout-time.Millisecond))
	if got := e.timeouts(t); len(got) != 0 {
		t.Fatalf("timed out before the timeout: %v", got)
	}
	e.sweepAt(t, s, lastBeat.Add(timeout))
	e.sweepAt(t, s, lastBeat.Add(timeout+time.Second))

	got := e.timeouts(t)[sid]
	if len(got) != 1 {
		t.Fatalf("timeout events for %s = %d, want 1", sid, len(got))
	}
	if !got[0].LastSeen.Equal(lastBeat) || !got[0].Joined.Equal(noon) {
		t.Fatalf("timeout event last_seen=%v joined=%v, want %v and %v", got[0].LastSeen, got[0].Joined, lastBeat, noon)
	}
	if n := e.count(t, stageA); n != 0 {
		t.Fatalf("count = %d", n)
	}
	if n := testutil.Metric(t, reg, "viewpulse_snapshotter_timeouts_total"); n != 1 {
		t.Fatalf("timeouts metric = %v", n)
	}
}

func TestTwoSweepersRacingEmitOneTimeoutPerSession(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	const viewers = 60
	sessions := make([]string, 0, viewers)
	for i := range viewers {
		stage := []string{stageA, stageB, stageC}[i%3]
		sessions = append(sessions, e.joinAt(t, noon, stage, fmt.Sprintf("u%d", i)))
	}
	e.Clock.Set(noon.Add(timeout))
	// A small limit makes each sweeper loop over several Redis steps per
	// stage, so the two interleave.
	a, regA := e.NewSnapshotter(t, snapshotter.Config{SweepLimit: 4})
	b, regB := e.NewSnapshotter(t, snapshotter.Config{SweepLimit: 4})
	var wg conc.WaitGroup
	for range 3 {
		for _, s := range []*snapshotter.Snapshotter{a, b} {
			wg.Go(func() {
				if err := s.SweepOnce(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()

	got := e.timeouts(t)
	for _, sid := range sessions {
		if len(got[sid]) != 1 {
			t.Errorf("session %s: %d timeout events, want 1", sid, len(got[sid]))
		}
	}
	total := testutil.Metric(t, regA, "viewpulse_snapshotter_timeouts_total") + testutil.Metric(t, regB, "viewpulse_snapshotter_timeouts_total")
	if len(got) != viewers || total != viewers {
		t.Fatalf("timed-out sessions = %d, counted by the sweepers = %v, want %d", len(got), total, viewers)
	}
}

func TestHeartbeatJustBeforeSweepKeepsViewer(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	s, _ := e.NewSnapshotter(t, snapshotter.Config{})
	kept := e.joinAt(t, noon, stageA, "kept")
	silent := e.joinAt(t, noon, stageA, "silent")

	// The last millisecond in which kept is still present: its heartbeat
	// lands, then the sweep runs at the very moment it would have expired.
	e.heartbeatAt(t, noon.Add(timeout-time.Millisecond), kept)
	e.sweepAt(t, s, noon.Add(timeout))

	got := e.timeouts(t)
	if len(got[kept]) != 0 {
		t.Fatalf("viewer who heartbeated was timed out: %+v", got[kept])
	}
	if len(got[silent]) != 1 {
		t.Fatalf("silent viewer: %d timeout events, want 1", len(got[silent]))
	}
	if n := e.count(t, stageA); n != 1 {
		t.Fatalf("count = %d, want 1", n)
	}
	e.heartbeatAt(t, noon.Add(timeout), kept) // still an open session
}

func TestTwoSnapshottersOneRowPerStageAndBoundary(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	for _, j := range []struct{ stage, user string }{{stageA, "u1"}, {stageA, "u2"}, {stageB, "u1"}, {stageC, "u3"}} {
		e.joinAt(t, noon.Add(-time.Minute), j.stage, j.user)
	}

	wake := noon.Add(3 * time.Millisecond) // just after the boundary
	e.Clock.Set(wake)
	b := snapshotter.Boundary(wake, every)
	if !b.Equal(noon) {
		t.Fatalf("boundary of %v = %v", wake, b)
	}
	s1, _ := e.NewSnapshotter(t, snapshotter.Config{})
	s2, _ := e.NewSnapshotter(t, snapshotter.Config{})
	var (
		wg       conc.WaitGroup
		inserted [2]int64
	)
	for i, s := range []*snapshotter.Snapshotter{s1, s2} {
		wg.Go(func() {
			n, err := s.SnapshotAt(context.Background(), b)
			if err != nil {
				t.Error(err)
			}
			inserted[i] = n
		})
	}
	wg.Wait()
	if inserted[0]+inserted[1] != 3 {
		t.Fatalf("inserted %d + %d rows, want 3 in all", inserted[0], inserted[1])
	}
	want := map[string]int64{stageA: 2, stageB: 1, stageC: 1}
	for stage, n := range want {
		rows := e.snapshots(t, stage)
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows, want 1: %+v", stage, len(rows), rows)
		}
		r := rows[0]
		if !r.Time.Equal(noon) || r.Time.UnixMilli()%every.Milliseconds() != 0 || r.Viewers != n || r.Peak != n {
			t.Fatalf("%s: row %+v, want %d viewers at %v", stage, r, n, noon)
		}
	}
}

func TestPeakBetweenBoundariesIsRecorded(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	s, _ := e.NewSnapshotter(t, snapshotter.Config{})
	stay := e.joinAt(t, noon.Add(time.Minute), stageA, "stay")
	var gone []string
	for _, u := range []string{"u2", "u3", "u4"} {
		gone = append(gone, e.joinAt(t, noon.Add(time.Minute), stageA, u))
	}
	for _, sid := range gone {
		e.leaveAt(t, noon.Add(2*time.Minute), sid)
	}
	e.heartbeatAt(t, noon.Add(2*time.Minute), stay)
	e.heartbeatAt(t, noon.Add(3*time.Minute+30*time.Second), stay)

	next := noon.Add(every)
	e.snapshotAt(t, s, next)
	rows := e.snapshots(t, stageA)
	if len(rows) != 1 || rows[0].Viewers != 1 || rows[0].Peak != 4 || !rows[0].Time.Equal(next) {
		t.Fatalf("rows = %+v, want one at %v with 1 viewer and peak 4", rows, next)
	}
}

func TestStageThatEmptiedByLeaveGetsOneZeroRow(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	s, _ := e.NewSnapshotter(t, snapshotter.Config{})
	sid := e.joinAt(t, noon.Add(-time.Minute), stageA, "u1")
	e.snapshotAt(t, s, noon)
	e.heartbeatAt(t, noon.Add(30*time.Second), sid)
	e.leaveAt(t, noon.Add(2*time.Minute), sid)
	for i := 1; i <= 3; i++ {
		e.snapshotAt(t, s, noon.Add(time.Duration(i)*every))
	}
	rows := e.snapshots(t, stageA)
	want := []store.Snapshot{
		{Stage: stageA, Time: noon, Viewers: 1, Peak: 1},
		{Stage: stageA, Time: noon.Add(every), Viewers: 0, Peak: 1},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("rows = %+v\nwant   %+v", rows, want)
	}

	// Active again: rows again.
	e.joinAt(t, noon.Add(3*every+time.Minute), stageA, "u2")
	if n := e.snapshotAt(t, s, noon.Add(4*every)); n != 1 {
		t.Fatalf("inserted %d rows after a new join, want 1", n)
	}
}

func TestStageThatEmptiedByTimeoutGetsZeroRowBeforeItIsForgotten(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	s, _ := e.NewSnapshotter(t, snapshotter.Config{})
	sid := e.joinAt(t, noon.Add(-time.Minute), stageA, "u1")
	lastBeat := noon.Add(4*time.Minute + 30*time.Second)
	for at := noon; at.Before(lastBeat); at = at.Add(time.Minute) {
		e.heartbeatAt(t, at, sid)
	}
	e.heartbeatAt(t, lastBeat, sid)

	b1 := noon.Add(every)
	e.snapshotAt(t, s, b1)                             // 1 viewer
	e.sweepAt(t, s, lastBeat.Add(timeout+time.Second)) // times the viewer out, keeps the stage
	if got := e.timeouts(t)[sid]; len(got) != 1 {
		t.Fatalf("timeout events = %d", len(got))
	}

	// The last join or heartbeat is older than the interval at b2, yet the
	// stage had a viewer at b1: it gets its 0 row, and no more after it.
	b2, b3 := b1.Add(every), b1.Add(2*every)
	for _, b := range []time.Time{b2, b3} {
		e.sweepAt(t, s, b)
		e.snapshotAt(t, s, b)
	}
	rows := e.snapshots(t, stageA)
	want := []store.Snapshot{
		{Stage: stageA, Time: b1, Viewers: 1, Peak: 1},
		{Stage: stageA, Time: b2, Viewers: 0, Peak: 1},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("rows = %+v\nwant   %+v", rows, want)
	}

	forget := lastBeat.Add(timeout + 2*every)
	e.sweepAt(t, s, forget)
	if st, _ := e.Stream.Stages(context.Background(), time.Time{}); len(st) != 1 {
		t.Fatalf("stage forgotten at %v, before the forgetting age: %+v", forget, st)
	}
	e.sweepAt(t, s, forget.Add(time.Millisecond))
	if st, _ := e.Stream.Stages(context.Background(), time.Time{}); len(st) != 0 {
		t.Fatalf("stage not forgotten: %+v", st)
	}
}

func TestRetentionDeletesOnlyOldRows(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	ctx := context.Background()
	now := noon
	day := 24 * time.Hour
	for _, age := range []time.Duration{100 * day, 91 * day, 89 * day, time.Hour} {
		if _, err := e.DB.InsertSnapshots(ctx, []store.Snapshot{{Stage: stageA, Time: now.Add(-age), Viewers: 1, Peak: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	insertSession := func(id string, joined, left *time.Time) {
		t.Helper()
		_, err := e.DB.Pool.Exec(ctx, `
INSERT INTO viewer_sessions (session_id, user_id, stage_arn, joined_at, last_seen_at, left_at, end_reason)
VALUES ($1, 'u', $2, $3, $4, $5, CASE WHEN $5::timestamptz IS NULL THEN NULL ELSE 'leave' END)`,
			id, stageA, joined, now.Add(-100*day), left)
		if err != nil {
			t.Fatal(err)
		}
	}
	at := func(age time.Duration) *time.Time { v := now.Add(-age); return &v }
	insertSession("old", at(41*day), at(40*day))
	insertSession("old-no-join", nil, at(35*day))
	insertSession("recent", at(11*day), at(10*day))
	insertSession("open", at(100*day), nil)

	keep, regKeep := e.NewSnapshotter(t, snapshotter.Config{DeleteBatch: 1})
	if err := keep.RetainOnce(ctx); err != nil {
		t.Fatal(err)
	}
	prune, regPrune := e.NewSnapshotter(t, snapshotter.Config{DeleteBatch: 1, SessionRetention: 30 * day})
	if err := prune.RetainOnce(ctx); err != nil {
		t.Fatal(err)
	}

	rows, err := e.DB.Snapshots(ctx, stageA, time.Time{}, now.Add(day))
	if err != nil {
		t.Fatal(err)
	}
	var got []time.Time
	for _, r := range rows {
		got = append(got, r.Time)
	}
	if fmt.Sprint(got) != fmt.Sprint([]time.Time{now.Add(-89 * day), now.Add(-time.Hour)}) {
		t.Fatalf("snapshots left: %v", got)
	}
	var left []string
	sessRows, _ := e.DB.Pool.Query(ctx, `SELECT session_id FROM viewer_sessions ORDER BY session_id`)
	for sessRows.Next() {
		var id string
		if err := sessRows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if err := sessRows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(left) != "[open recent]" {
		t.Fatalf("sessions left: %v", left)
	}
	deleted := func(reg *prometheus.Registry, table string) float64 {
		t.Helper()
		return testutil.Metric(t, reg, "viewpulse_snapshotter_deleted_rows_total", "table", table)
	}
	if d := deleted(regKeep, "viewer_stats_snapshots") + deleted(regPrune, "viewer_stats_snapshots"); d != 2 {
		t.Fatalf("snapshot rows deleted = %v", d)
	}
	if d := deleted(regKeep, "viewer_sessions"); d != 0 {
		t.Fatalf("sessions deleted without SESSION_RETENTION = %v", d)
	}
	if d := deleted(regPrune, "viewer_sessions"); d != 2 {
		t.Fatalf("sessions deleted = %v", d)
	}
}

func TestRunWritesAlignedSnapshots(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.Clock = nil // Run is driven by the real clock here
	e.Stream.Now = time.Now
	if _, err := e.Stream.Join(context.Background(), events.JoinRequest{Stage: stageA, User: "u1"}); err != nil {
		t.Fatal(err)
	}
	const interval = 200 * time.Millisecond
	s := snapshotter.New(e.Stream, e.DB, snapshotter.Config{
		SweepInterval: 50 * time.Millisecond, SnapshotInterval: interval, Grace: interval,
	}, slog.New(slog.NewTextHandler(t.Output(), nil)), prometheus.NewRegistry())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		rows, err := e.DB.Snapshots(context.Background(), stageA, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			return false, err.Error()
		}
		if len(rows) < 2 {
			return false, fmt.Sprintf("rows = %+v", rows)
		}
		for _, r := range rows {
			if r.Time.UnixMilli()%interval.Milliseconds() != 0 || r.Viewers != 1 {
				t.Fatalf("row %+v is not aligned to %v or lost the viewer", r, interval)
			}
		}
		return true, ""
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestBoundaryAlignsToEpoch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at       time.Time
		interval time.Duration
		want     time.Time
	}{
		{noon.Add(4*time.Minute + 59*time.Second), every, noon},
		{noon, every, noon},
		{noon.Add(-time.Millisecond), every, noon.Add(-every)},
		{time.UnixMilli(7 * 60_000), 3 * time.Minute, time.UnixMilli(6 * 60_000)},
		{time.UnixMilli(-1), time.Minute, time.UnixMilli(-60_000)},
	} {
		if got := snapshotter.Boundary(tc.at, tc.interval); !got.Equal(tc.want) {
			t.Errorf("Boundary(%v, %v) = %v, want %v", tc.at, tc.interval, got, tc.want)
		}
	}
}
