package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

// errCrash is what the test hooks return to stop a Step where a crash would.
var errCrash = errors.New("simulated crash")

// env is one test's corner of Redis and PostgreSQL.
type env struct {
	t      testing.TB
	rdb    redis.UniversalClient
	prefix string
	keys   events.Keys   // partition 0's
	parts  []events.Keys // every partition's
	stages []string      // the workload's
	stream *events.Stream
	clock  *testutil.Clock
	dbURL  string
	db     *store.DB
}

func newEnv(t testing.TB) *env {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	return newEnvOn(t, rdb, prefix, 1, []string{stage, stage + "2", stage + "3"})
}

// newEnvOn is an env of parts partitions on rdb (a server or a cluster)
// whose workload uses stages.
func newEnvOn(t testing.TB, rdb redis.UniversalClient, prefix string, parts int, stages []string) *env {
	t.Helper()
	c := testutil.NewClock(time.UnixMilli(1_760_000_000_000).UTC())
	s := events.NewPartitionedStream(rdb, prefix, 120*time.Second, parts)
	s.Now = c.Now
	url := testutil.Schema(t)
	e := &env{t: t, rdb: rdb, prefix: prefix, keys: s.Keys(), stages: stages, stream: s, clock: c, dbURL: url, db: openDB(t, url)}
	for p := range parts {
		e.parts = append(e.parts, s.PartitionKeys(p))
	}
	return e
}

func openDB(t testing.TB, url string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), url, store.Options{Migrate: true, MaxConns: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// projector returns an initialised projector with test defaults: short
// blocking reads, no batch wait, claims checked on every step.
func (e *env) projector(name string, db *store.DB, tune func(*Config)) *Projector {
	e.t.Helper()
	cfg := Config{Consumer: name, BatchSize: 50, Block: time.Millisecond, Now: e.clock.Now,
		Log: slog.New(slog.DiscardHandler)}
	if tune != nil {
		tune(&cfg)
	}
	p := New(e.rdb, e.keys, db, cfg)
	if err := p.Init(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// group returns the projector group's pending count and lag, summed over
// the partitions; a partition whose stream has no group yet counts its
// length as lag.
func (e *env) group() (pending, lag int64) {
	e.t.Helper()
	for _, k := range e.parts {
		gs, err := e.rdb.XInfoGroups(context.Background(), k.Stream()).Result()
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			e.t.Fatal(err)
		}
		found := false
		for _, g := range gs {
			if g.Name == DefaultGroup {
				pending, lag, found = pending+g.Pending, lag+g.Lag, true
			}
		}
		if !found {
			lag += e.rdb.XLen(context.Background(), k.Stream()).Val()
		}
	}
	return pending, lag
}

// drained reports whether the group has read and acknowledged everything.
func (e *env) drained() (bool, string) {
	pending, lag := e.group()
	return pending == 0 && lag == 0, fmt.Sprintf("pending %d, lag %d", pending, lag)
}

// stepUntilDrained steps ps in random order until the group is drained,
// ignoring simulated crashes.
func (e *env) stepUntilDrained(r *rand.Rand, ps ...*Projector) {
	e.t.Helper()
	for i := 0; ; i++ {
		if i%5 == 0 {
			if ok, _ := e.drained(); ok {
				return
			}
		}
		if i > 20_000 {
			_, msg := e.drained()
			e.t.Fatalf("not drained after %d steps: %s", i, msg)
		}
		if _, err := ps[r.IntN(len(ps))].Step(context.Background()); err != nil && !errors.Is(err, errCrash) {
			e.t.Fatal(err)
		}
	}
}

// workload drives a random but seeded mix of joins, rejoins, heartbeats,
// leaves (some repeated), sweeps with timeouts and duplicated entries through
// the real stream scripts, n steps long.
func (e *env) workload(seed uint64, n int) {
	e.t.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 99))
	stages := e.stages
	var sessions []string
	countries := []string{"DE", "US", "FR", ""}
	recent := func() string { // mostly a recent session, sometimes any
		if r.IntN(10) == 0 {
			return sessions[r.IntN(len(sessions))]
		}
		return sessions[max(0, len(sessions)-1-r.IntN(12))]
	}
	for range n {
		e.clock.Add(time.Duration(r.IntN(4_000)) * time.Millisecond)
		switch x := r.IntN(100); {
		case x < 20 || len(sessions) == 0:
			req := events.JoinRequest{Stage: stages[r.IntN(len(stages))], User: fmt.Sprintf("user-%02d", r.IntN(30))}
			if r.IntN(4) > 0 {
				req.Participant = fmt.Sprintf("part-%d", r.IntN(1000))
				req.UA = fmt.Sprintf("Mozilla/5.0 (%d)", r.IntN(5))
				req.Country = countries[r.IntN(len(countries))]
				if r.IntN(2) == 0 {
					req.IP = fmt.Sprintf("198.51.100.%d", r.IntN(250))
				} else {
					req.IP = fmt.Sprintf("2001:db8::%x", r.IntN(4000)+1)
				}
			}
			j, err := e.stream.Join(ctx, req)
			if err != nil {
				e.t.Fatal(err)
			}
			if !j.Rejoined {
				sessions = append(sessions, j.Session)
			}
		case x < 72:
			_, err := e.stream.Heartbeat(ctx, recent())
			if err != nil && !errors.Is(err, events.ErrSessionNotFound) {
				e.t.Fatal(err)
			}
		case x < 84:
			if _, err := e.stream.Leave(ctx, recent()); err != nil {
				e.t.Fatal(err)
			}
		case x < 89:
			if _, err := e.stream.Sweep(ctx, stages[r.IntN(len(stages))], 100, e.clock.Now().Add(-time.Hour)); err != nil {
				e.t.Fatal(err)
			}
		case x < 98:
			// An entry appended twice, as a retried write would.
			stream := e.stream.KeysOf(stages[r.IntN(len(stages))]).Stream()
			last, err := e.rdb.XRevRangeN(ctx, stream, "+", "-", 30).Result()
			if err != nil {
				e.t.Fatal(err)
			}
			if len(last) == 0 {
				continue
			}
			dup := last[r.IntN(len(last))]
			if _, err := events.Decode(dup.ID, dup.Values); err != nil {
				continue // a test's own garbage entry
			}
			if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: dup.Values}).Err(); err != nil {
				e.t.Fatal(err)
			}
		default:
			e.clock.Add(130 * time.Second)
		}
	}
}

// model computes the rows the streams' events must produce, sequentially
// and in stream order (partition after partition: a session's events are
// all in one), the simplest way: the oracle for the projector.
func (e *env) model() (map[string]store.SessionRow, map[string]store.UserRow) {
	e.t.Helper()
	var msgs []redis.XMessage
	for _, k := range e.parts {
		m, err := e.rdb.XRange(context.Background(), k.Stream(), "-", "+").Result()
		if err != nil {
			e.t.Fatal(err)
		}
		msgs = append(msgs, m...)
	}
	sessions := map[string]store.SessionRow{}
	users := map[string]store.UserRow{}
	types := map[events.Type]int{}
	defer func() { e.t.Logf("model of %d entries: %v, %d sessions", len(msgs), types, len(sessions)) }()
	for _, m := range msgs {
		ev, err := events.Decode(m.ID, m.Values)
		if err != nil {
			continue // dead-lettered
		}
		types[ev.Type]++
		s, ok := sessions[ev.Session]
		if !ok {
			s = store.SessionRow{SessionID: ev.Session, UserID: ev.User, StageARN: ev.Stage, LastSeenAt: ev.At}
		}
		first := func(dst *string, v string) {
			if *dst == "" {
				*dst = v
			}
		}
		earliest := func(dst *time.Time, v time.Time) {
			if dst.IsZero() || v.Before(*dst) {
				*dst = v
			}
		}
		latest := func(dst *time.Time, v time.Time) {
			if v.After(*dst) {
				*dst = v
			}
		}
		first(&s.ParticipantID, ev.Participant)
		created := ev.At
		switch ev.Type {
		case events.Join:
			earliest(&s.JoinedAt, ev.At)
			latest(&s.LastSeenAt, ev.At)
			first(&s.UserAgent, ev.UA)
			first(&s.IPAddress, ev.IP)
			first(&s.CountryCode, ev.Country)
			c := ParseUserAgent(ev.UA)
			first(&s.DeviceType, c.DeviceType)
			first(&s.OS, c.OS)
			first(&s.Browser, c.Browser)
		case events.Heartbeat:
			latest(&s.LastSeenAt, ev.At)
		case events.Leave, events.Timeout:
			earliest(&s.JoinedAt, ev.Joined)
			if !ok {
				s.LastSeenAt = ev.LastSeen
			}
			latest(&s.LastSeenAt, ev.LastSeen)
			latest(&s.LeftAt, ev.LastSeen)
			first(&s.EndReason, string(ev.Type))
			earliest(&created, ev.Joined)
		}
		sessions[ev.Session] = s
		u, ok := users[ev.User]
		if !ok {
			u = store.UserRow{UserID: ev.User, CreatedAt: created}
		}
		earliest(&u.CreatedAt, created)
		users[ev.User] = u
	}
	for id, s := range sessions {
		if !s.JoinedAt.IsZero() && !s.LeftAt.IsZero() {
			s.WatchDurationSeconds.Int32 = int32(math.Floor(s.LeftAt.Sub(s.JoinedAt).Seconds()))
			s.WatchDurationSeconds.Valid = true
			sessions[id] = s
		}
	}
	return sessions, users
}

// rows reads every session and user of db.
func rows(t testing.TB, db *store.DB) (map[string]store.SessionRow, map[string]store.UserRow) {
	t.Helper()
	sessions := readAll(t, &cursor[store.SessionRow]{page: db.SessionsAfter, key: func(s store.SessionRow) string { return s.SessionID }})
	users := readAll(t, &cursor[store.UserRow]{page: db.UsersAfter, key: func(u store.UserRow) string { return u.UserID }})
	return sessions, users
}

func readAll[R any](t testing.TB, c *cursor[R]) map[string]R {
	t.Helper()
	out := map[string]R{}
	for {
		r, ok, err := c.peek(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out[c.key(r)] = r
		c.next()
	}
}

// assertMatchesModel checks db against the model of e's stream, every column.
func (e *env) assertMatchesModel(db *store.DB) {
	e.t.Helper()
	wantS, wantU := e.model()
	gotS, gotU := rows(e.t, db)
	assertSame(e.t, gotS, wantS, gotU, wantU)
}

func assertSame(t testing.TB, gotS, wantS map[string]store.SessionRow, gotU, wantU map[string]store.UserRow) {
	t.Helper()
	if len(gotS) != len(wantS) || len(gotU) != len(wantU) {
		t.Errorf("%d sessions, %d users; want %d, %d", len(gotS), len(gotU), len(wantS), len(wantU))
	}
	bad := 0
	for id, w := range wantS {
		if g := gotS[id]; g != w && bad < 5 {
			bad++
			t.Errorf("session %s:\n got %+v\nwant %+v", id, g, w)
		}
	}
	for id, w := range wantU {
		if g := gotU[id]; g != w && bad < 10 {
			bad++
			t.Errorf("user %s:\n got %+v\nwant %+v", id, g, w)
		}
	}
}
