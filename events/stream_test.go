package events_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

const stage = "arn:aws:ivs:us-east-1:123456789012:stage/abcDEF123"

func newStream(t *testing.T) (*events.Stream, *redis.Client, *testutil.Clock) {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	c := testutil.NewClock(time.UnixMilli(1_760_000_000_000))
	s := events.NewStream(rdb, prefix, 120*time.Second)
	s.Now = c.Now
	return s, rdb, c
}

func readAll(t *testing.T, s *events.Stream) []events.Event {
	t.Helper()
	return readStream(t, s.Client(), s.Keys().Stream())
}

func types(es []events.Event) string {
	s := ""
	for _, e := range es {
		s += string(e.Type) + " "
	}
	return s
}

func TestJoinHeartbeatLeave(t *testing.T) {
	s, _, c := newStream(t)
	ctx := context.Background()
	j, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1", Participant: "p1", UA: "ua", IP: "203.0.113.9", Country: "DE"})
	if err != nil {
		t.Fatal(err)
	}
	if j.Viewers != 1 || j.Rejoined || len(j.Session) != events.SessionIDLen {
		t.Fatalf("join = %+v", j)
	}
	c.Add(30 * time.Second)
	n, err := s.Heartbeat(ctx, j.Session)
	if err != nil || n != 1 {
		t.Fatalf("heartbeat = %d, %v", n, err)
	}
	c.Add(10 * time.Second)
	closed, err := s.Leave(ctx, j.Session)
	if err != nil || !closed {
		t.Fatalf("leave = %v, %v", closed, err)
	}
	closed, err = s.Leave(ctx, j.Session)
	if err != nil || closed {
		t.Fatalf("second leave = %v, %v", closed, err)
	}
	if n, _ := s.Count(ctx, stage); n != 0 {
		t.Fatalf("count after leave = %d", n)
	}
	if _, err := s.Heartbeat(ctx, j.Session); !errors.Is(err, events.ErrSessionNotFound) {
		t.Fatalf("heartbeat after leave: %v", err)
	}
	es := readAll(t, s)
	if got := types(es); got != "join heartbeat leave " {
		t.Fatalf("events = %s", got)
	}
	join, leave := es[0], es[2]
	if join.UA != "ua" || join.IP != "203.0.113.9" || join.Country != "DE" || join.Participant != "p1" || join.User != "u1" || join.Stage != stage {
		t.Fatalf("join event = %+v", join)
	}
	if !leave.Joined.Equal(join.At) || !leave.LastSeen.Equal(c.Now()) || leave.Session != j.Session {
		t.Fatalf("leave event = %+v (join at %v)", leave, join.At)
	}
}

func TestTwoTabsCountOnceAndRejoinContinues(t *testing.T) {
	s, _, c := newStream(t)
	ctx := context.Background()
	a, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1"})
	c.Add(time.Second)
	b, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Rejoined || b.Session != a.Session || b.Viewers != 1 {
		t.Fatalf("second tab = %+v, first %+v", b, a)
	}
	other, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u2"})
	if other.Viewers != 2 {
		t.Fatalf("second user count = %d", other.Viewers)
	}
	es := readAll(t, s)
	if es[1].Type != events.Join || es[1].Session != a.Session || es[1].UA != "" {
		t.Fatalf("rejoin event = %+v", es[1])
	}
}

func TestExpiryByTime(t *testing.T) {
	s, _, c := newStream(t)
	ctx := context.Background()
	j, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1"})
	joinedAt := c.Now()
	c.Add(119 * time.Second)
	if n, _ := s.Count(ctx, stage); n != 1 {
		t.Fatalf("count before timeout = %d", n)
	}
	c.Add(time.Second)
	if n, _ := s.Count(ctx, stage); n != 0 {
		t.Fatalf("count at timeout = %d, want 0 without any sweep", n)
	}
	if got, _ := s.Stages(ctx, time.Time{}); len(got) != 1 || got[0].Viewers != 0 {
		t.Fatalf("stages = %+v", got)
	}
	if _, err := s.Heartbeat(ctx, j.Session); !errors.Is(err, events.ErrSessionNotFound) {
		t.Fatalf("heartbeat after expiry: %v", err)
	}
	es := readAll(t, s)
	last := es[len(es)-1]
	if last.Type != events.Timeout || !last.LastSeen.Equal(joinedAt) || !last.Joined.Equal(joinedAt) {
		t.Fatalf("closing event = %+v", last)
	}
	// A new join opens a new session.
	j2, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1"})
	if j2.Rejoined || j2.Session == j.Session || j2.Viewers != 1 {
		t.Fatalf("join after expiry = %+v", j2)
	}
}

func TestJoinClosesExpiredSessionFirst(t *testing.T) {
	s, _, c := newStream(t)
	ctx := context.Background()
	j, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1"})
	c.Add(10 * time.Second)
	_, _ = s.Heartbeat(ctx, j.Session)
	lastBeat := c.Now()
	c.Add(5 * time.Minute)
	j2, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1"})
	es := readAll(t, s)
	if got := types(es); got != "join heartbeat timeout join " {
		t.Fatalf("events = %s", got)
	}
	if es[2].Session != j.Session || !es[2].LastSeen.Equal(lastBeat) || es[3].Session != j2.Session {
		t.Fatalf("timeout %+v, new join %+v", es[2], es[3])
	}
}

func TestSweep(t *testing.T) {
	s, _, c := newStream(t)
	ctx := context.Background()
	a, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "silent"})
	aSeen := c.Now()
	c.Add(100 * time.Second)
	b, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "alive"})
	c.Add(30 * time.Second)
	n, err := s.Sweep(ctx, stage, 100, time.Time{})
	if err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	if n, _ := s.Sweep(ctx, stage, 100, time.Time{}); n != 0 {
		t.Fatalf("second sweep closed %d", n)
	}
	if _, err := s.Heartbeat(ctx, b.Session); err != nil {
		t.Fatalf("alive viewer: %v", err)
	}
	es := readAll(t, s)
	var timeouts []events.Event
	for _, e := range es {
		if e.Type == events.Timeout {
			timeouts = append(timeouts, e)
		}
	}
	if len(timeouts) != 1 || timeouts[0].Session != a.Session || !timeouts[0].LastSeen.Equal(aSeen) {
		t.Fatalf("timeouts = %+v", timeouts)
	}
	// Once empty and idle, the stage is forgotten.
	_, _ = s.Leave(ctx, b.Session)
	if _, err := s.Sweep(ctx, stage, 100, c.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Stages(ctx, time.Time{}); len(got) != 0 {
		t.Fatalf("stages after idle sweep = %+v", got)
	}
}

func TestConcurrentJoinsCountExactly(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	s := events.NewStream(rdb, prefix, 120*time.Second)
	ctx := context.Background()
	const users, workers = 1000, 50
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > users {
					return
				}
				if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: fmt.Sprintf("user-%d", i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, stage); n != users {
		t.Fatalf("count = %d, want %d", n, users)
	}
	if n, _ := rdb.XLen(ctx, s.Keys().Stream()).Result(); n != users {
		t.Fatalf("stream length = %d, want %d", n, users)
	}
	peak, err := s.Peak(ctx, stage, s.Now().Add(-time.Minute), s.Now().Add(time.Minute))
	if err != nil || peak != users {
		t.Fatalf("peak = %d, %v", peak, err)
	}
}

func TestBackpressure(t *testing.T) {
	s, rdb, _ := newStream(t)
	ctx := context.Background()
	s.MaxLen = 2
	j, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u1"})
	_, _ = s.Join(ctx, events.JoinRequest{Stage: stage, User: "u2"})
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u3"}); !errors.Is(err, events.ErrBackpressure) {
		t.Fatalf("join over bound: %v", err)
	}
	if _, err := s.Heartbeat(ctx, j.Session); !errors.Is(err, events.ErrBackpressure) {
		t.Fatalf("heartbeat over bound: %v", err)
	}
	if n, _ := rdb.XLen(ctx, s.Keys().Stream()).Result(); n != 2 {
		t.Fatalf("stream length = %d", n)
	}
	if n, _ := s.Count(ctx, stage); n != 2 {
		t.Fatalf("count = %d", n)
	}
}

func TestPresentListsNewestFirst(t *testing.T) {
	s, _, c := newStream(t)
	ctx := context.Background()
	_, _ = s.Join(ctx, events.JoinRequest{Stage: stage, User: "a"})
	c.Add(time.Second)
	_, _ = s.Join(ctx, events.JoinRequest{Stage: stage, User: "b|with|pipes"})
	v, err := s.Present(ctx, stage, 0)
	if err != nil || len(v) != 2 || v[0].User != "b|with|pipes" || v[1].User != "a" {
		t.Fatalf("present = %+v, %v", v, err)
	}
}

func TestCapacityRefusesNewViewersOnly(t *testing.T) {
	s, rdb, _ := newStream(t)
	ctx := context.Background()
	if err := s.SetCapacity(ctx, stage, 2); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "a"})
	_, _ = s.Join(ctx, events.JoinRequest{Stage: stage, User: "b"})
	before, _ := rdb.XLen(ctx, s.Keys().Stream()).Result()
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "c"}); !errors.Is(err, events.ErrStageFull) {
		t.Fatalf("third viewer: %v", err)
	}
	if after, _ := rdb.XLen(ctx, s.Keys().Stream()).Result(); after != before {
		t.Fatal("a refused join appended an event")
	}
	if r, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "a"}); err != nil || !r.Rejoined || r.Session != a.Session {
		t.Fatalf("present viewer refused: %+v %v", r, err)
	}
	_ = s.SetCapacity(ctx, stage, 0)
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "c"}); err != nil {
		t.Fatalf("after lifting the limit: %v", err)
	}
}

func TestBackpressureCountsOnlyTheBacklog(t *testing.T) {
	s, rdb, _ := newStream(t)
	ctx := context.Background()
	s.MaxLen = 3
	stream := s.Keys().Stream()
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a", "b", "c"} {
		if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "d"}); !errors.Is(err, events.ErrBackpressure) {
		t.Fatalf("3 unread entries, bound 3: %v", err)
	}
	// Delivered but not acknowledged still counts.
	msgs, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 10}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "d"}); !errors.Is(err, events.ErrBackpressure) {
		t.Fatalf("3 pending entries, bound 3: %v", err)
	}
	// Acknowledged entries kept in the stream do not.
	for _, m := range msgs[0].Messages {
		rdb.XAck(ctx, stream, "g", m.ID)
	}
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "d"}); err != nil {
		t.Fatalf("all acknowledged: %v", err)
	}
}

func TestRecordEveryThinsHeartbeatsNotPresence(t *testing.T) {
	s, rdb, c := newStream(t)
	ctx := context.Background()
	s.RecordEvery = 5 * time.Minute
	j, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "u"})
	for i := 0; i < 20; i++ { // 10 minutes of heartbeats every 30 s
		c.Add(30 * time.Second)
		if _, err := s.Heartbeat(ctx, j.Session); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	lastBeat := c.Now()
	hb := 0
	for _, e := range readAll(t, s) {
		if e.Type == events.Heartbeat {
			hb++
		}
	}
	if hb != 2 { // the first heartbeat 5 and 10 minutes after the join
		t.Fatalf("%d heartbeat events for 20 heartbeats over two buckets", hb)
	}
	// Presence followed every heartbeat: silent for just under the timeout
	// still counts, and the timeout closes at the true last heartbeat.
	c.Add(119 * time.Second)
	if n, _ := s.Count(ctx, stage); n != 1 {
		t.Fatalf("count = %d", n)
	}
	c.Add(2 * time.Second)
	if n, _ := s.Sweep(ctx, stage, 10, time.Time{}); n != 1 {
		t.Fatalf("swept %d", n)
	}
	es := readAll(t, s)
	if last := es[len(es)-1]; last.Type != events.Timeout || !last.LastSeen.Equal(lastBeat) {
		t.Fatalf("closing event = %+v, last heartbeat %v", last, lastBeat)
	}
	// A heartbeat that appends nothing is not refused for back-pressure.
	j2, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "v"})
	s.MaxLen = 1
	c.Add(10 * time.Second)
	if _, err := s.Heartbeat(ctx, j2.Session); err != nil {
		t.Fatalf("unrecorded heartbeat under back-pressure: %v", err)
	}
	_ = rdb
}

// A call whose caller gave up while Redis was stuck is not run afterwards:
// not the queued ones (never sent), and not those already written to Redis's
// socket (the script checks its deadline on Redis's clock). Each says which
// it was: a plain context error (never sent) or ErrOutcomeUnknown.
func TestAbandonedCallsDoNotRunLater(t *testing.T) {
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) { abandonedCallsDoNotRunLater(t, delay) })
	}
}

func abandonedCallsDoNotRunLater(t *testing.T, delay time.Duration) {
	srv := testutil.StartRedisServer(t, "--enable-debug-command", "yes")
	opt, _ := redis.ParseURL(srv.URL)
	opt.ContextTimeoutEnabled = true // as config.Common.Redis sets it
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	s := events.NewStream(rdb, "stuck", 120*time.Second)
	s.SetFlushDelay(delay)
	ctx := context.Background()
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "warm"}); err != nil {
		t.Fatal(err)
	}
	blocker := redis.NewClient(opt)
	t.Cleanup(func() { blocker.Close() })
	slept := make(chan error, 1)
	go func() { slept <- blocker.Do(ctx, "DEBUG", "SLEEP", "1.5").Err() }()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) { // Redis is asleep
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		err := rdb.Ping(short).Err()
		return err != nil, "Redis still answers"
	})
	var wg sync.WaitGroup
	var unknown atomic.Int32
	for i := 0; i < 200; i++ { // more than the flush loops can hold in flight
		wg.Add(1)
		go func() {
			defer wg.Done()
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err := s.Join(short, events.JoinRequest{Stage: stage, User: fmt.Sprint("late-", i)})
			switch {
			case err == nil:
				t.Errorf("join %d succeeded while Redis slept", i)
			case errors.Is(err, events.ErrOutcomeUnknown):
				unknown.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
			default:
				t.Errorf("join %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "after"}); err != nil {
		t.Fatal(err)
	}
	n, _ := rdb.XLen(ctx, s.Keys().Stream()).Result()
	if n != 2 {
		t.Fatalf("%d events after the sleep: abandoned joins ran later", n-2)
	}
	if unknown.Load() == 0 {
		t.Fatal("no call was in flight when its caller gave up: the test did not reach Redis's socket")
	}
	t.Logf("%d calls were sent before their callers gave up (outcome unknown), none ran", unknown.Load())
}

// Peaks are kept per minute in one hash per stage and hour; a window across
// an hour boundary sees both hours, and only its own minutes.
func TestPeakAcrossAnHour(t *testing.T) {
	s, _, c := newStream(t)
	ctx := context.Background()
	hour := c.Now().Truncate(time.Hour).Add(time.Hour)
	c.Add(hour.Add(-90 * time.Second).Sub(c.Now())) // hh:58:30
	for _, u := range []string{"a", "b", "c"} {
		s.Join(ctx, events.JoinRequest{Stage: stage, User: u})
	}
	c.Add(100 * time.Second) // (hh+1):00:10, the three are still present
	j, _ := s.Join(ctx, events.JoinRequest{Stage: stage, User: "d"})
	_, _ = s.Leave(ctx, j.Session)
	cases := []struct {
		from, to time.Time
		want     int64
	}{
		{hour.Add(-5 * time.Minute), hour.Add(5 * time.Minute), 4},
		{hour.Add(-5 * time.Minute), hour, 3},
		{hour, hour.Add(5 * time.Minute), 4},
		{hour.Add(time.Minute), hour.Add(5 * time.Minute), 0},
	}
	for _, tc := range cases {
		if got, err := s.Peak(ctx, stage, tc.from, tc.to); err != nil || got != tc.want {
			t.Errorf("peak [%s, %s) = %d, %v; want %d", tc.from.Format("15:04"), tc.to.Format("15:04"), got, err, tc.want)
		}
	}
}
