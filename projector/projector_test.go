package projector

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/sourcegraph/conc/pool"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestOracleSteppedConsumers delivers a random workload to three projectors
// of one group stepping in random order with random batch sizes, crashing
// before the commit or between the commit and the XACK now and then, and
// claiming each other's pending entries; the rows must equal the sequential
// model of the stream, every column.
func TestOracleSteppedConsumers(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.workload(seed, 1500)
			r := rand.New(rand.NewPCG(seed, 1))
			var ps []*Projector
			for i := range 3 {
				ps = append(ps, e.projector(fmt.Sprint("c", i), e.db, func(c *Config) {
					c.BatchSize = 5 + r.IntN(60)
					c.ClaimMinIdle = time.Millisecond
					c.BeforeApply = func([]string) error {
						if r.IntN(10) == 0 {
							return errCrash
						}
						return nil
					}
					c.AfterCommit = func([]string) error {
						if r.IntN(6) == 0 {
							return errCrash // committed, never acknowledged: redelivered
						}
						return nil
					}
				}))
			}
			e.stepUntilDrained(r, ps...)
			e.assertMatchesModel(e.db)
		})
	}
}

// TestOracleConcurrentRun runs three projectors' Run loops at once while the
// workload is still being written, crashing after commits now and then.
func TestOracleConcurrentRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := pool.New().WithErrors()
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(42, 42))
	for i := range 3 {
		proj := e.projector(fmt.Sprint("run", i), e.db, func(c *Config) {
			c.BatchSize = 20 + 40*i
			c.ClaimMinIdle = 5 * time.Millisecond
			c.AfterCommit = func([]string) error {
				mu.Lock()
				defer mu.Unlock()
				if r.IntN(8) == 0 {
					return errCrash
				}
				return nil
			}
		})
		p.Go(func() error { return proj.Run(ctx, time.Second) })
	}
	e.workload(7, 1500)
	testutil.Eventually(t, 60*time.Second, e.drained)
	cancel()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	e.assertMatchesModel(e.db)
}

func TestCrashBetweenCommitAndAckChangesNothingOnRedelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.workload(11, 300)
	crashed := e.projector("p1", e.db, func(c *Config) {
		c.BatchSize = 10_000
		c.AfterCommit = func([]string) error { return errCrash }
	})
	if _, err := crashed.Step(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("step = %v, want the crash", err)
	}
	if pending, _ := e.group(); pending == 0 {
		t.Fatal("nothing pending after a crash before XACK")
	}
	e.assertMatchesModel(e.db) // committed
	beforeS, beforeU := rows(t, e.db)

	// The same consumer restarts and reads its own pending entries first.
	restarted := e.projector("p1", e.db, nil)
	e.stepUntilDrained(rand.New(rand.NewPCG(1, 1)), restarted)
	afterS, afterU := rows(t, e.db)
	assertSame(t, afterS, beforeS, afterU, beforeU)
	if n := promtest.ToFloat64(restarted.m.Redelivered); n == 0 {
		t.Fatal("no redelivery counted")
	}
}

func TestCrashBeforeCommitIsClaimedByAnother(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.workload(12, 300)
	ctx := context.Background()
	crashed := e.projector("p1", e.db, func(c *Config) {
		c.BatchSize = 10_000
		c.BeforeApply = func([]string) error { return errCrash }
	})
	if _, err := crashed.Step(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("step = %v, want the crash", err)
	}
	// One pending entry disappears from the stream (as a wrong trim would
	// do): it is counted and dropped, not dead-lettered.
	first, err := e.rdb.XRangeN(ctx, e.keys.Stream(), "-", "+", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.XDel(ctx, e.keys.Stream(), first[0].ID).Err(); err != nil {
		t.Fatal(err)
	}

	patient := e.projector("p2", e.db, nil) // default min idle: 30s
	if n, err := patient.Step(ctx); err != nil || n != 0 {
		t.Fatalf("step with 30s min idle = %d, %v; want nothing claimed", n, err)
	}
	other := e.projector("p3", e.db, func(c *Config) { c.ClaimMinIdle = time.Millisecond })
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		if _, err := other.Step(ctx); err != nil {
			t.Fatal(err)
		}
		return e.drained()
	})
	e.assertMatchesModel(e.db)
	// Redis drops a deleted entry from the pending list at the first
	// XAUTOCLAIM that passes it, whatever the min idle.
	if n := promtest.ToFloat64(patient.m.Deleted) + promtest.ToFloat64(other.m.Deleted); n != 1 {
		t.Fatalf("deleted pending entries counted = %v, want 1", n)
	}
	if n := e.rdb.XLen(ctx, e.keys.DeadLetter()).Val(); n != 0 {
		t.Fatalf("%d entries dead-lettered", n)
	}
}

func TestDuplicateSessionsInOneBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	j, err := e.stream.Join(ctx, events.JoinRequest{Stage: stage, User: "u", Participant: "p", IP: "203.0.113.1", Country: "DE"})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e.clock.Add(10 * time.Second)
		if _, err := e.stream.Heartbeat(ctx, j.Session); err != nil {
			t.Fatal(err)
		}
	}
	msgs := e.rdb.XRange(ctx, e.keys.Stream(), "-", "+").Val()
	for _, m := range msgs { // every entry twice
		e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.keys.Stream(), Values: m.Values})
	}
	p := e.projector("p", e.db, func(c *Config) { c.BatchSize = 100 })
	if n, err := p.Step(ctx); err != nil || n != 12 {
		t.Fatalf("step = %d, %v", n, err)
	}
	e.assertMatchesModel(e.db)
}

func TestPoisonEntriesAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.workload(13, 100)
	// Undecodable: garbage fields.
	garbage := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.keys.Stream(), Values: []any{"foo", "bar", "id", "x"}}).Val()
	// Decodable, but PostgreSQL refuses it: not an IP address.
	bad := events.Event{Type: events.Join, Session: "01BADSESSION", User: "u-bad", Stage: stage, At: e.clock.Now(), IP: "not-an-ip"}
	refusedID := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.keys.Stream(), Values: bad.Values()}).Val()
	e.workload(14, 100)

	p := e.projector("p", e.db, func(c *Config) { c.BatchSize = 64; c.MaxAttempts = 2 })
	for i := 0; ; i++ {
		if ok, _ := e.drained(); ok {
			break
		}
		if i > 100 {
			t.Fatal("poison stalls the projector")
		}
		_, _ = p.Step(ctx) // the refused batch fails MaxAttempts-1 times first
	}
	dead := e.rdb.XRange(ctx, e.keys.DeadLetter(), "-", "+").Val()
	if len(dead) != 2 {
		t.Fatalf("dead letters: %+v", dead)
	}
	if dead[0].Values["id"] != garbage || !strings.Contains(dead[0].Values["reason"].(string), "type") ||
		!strings.Contains(dead[0].Values["fields"].(string), `"foo":"bar"`) {
		t.Errorf("garbage dead letter: %+v", dead[0].Values)
	}
	if dead[1].Values["id"] != refusedID || !strings.Contains(dead[1].Values["reason"].(string), "inet") {
		t.Errorf("refused dead letter: %+v", dead[1].Values)
	}
	// The model skips only undecodable entries; drop the refused one from
	// the stream so that the model skips it too.
	e.rdb.XDel(ctx, e.keys.Stream(), refusedID)
	e.assertMatchesModel(e.db)
	if n := promtest.ToFloat64(p.m.DeadLettered); n != 2 {
		t.Fatalf("dead-lettered counter = %v", n)
	}
}

func TestPostgresOutageLosesAndDoublesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	proxy, proxyURL := testutil.ProxyURL(t, e.dbURL)
	viaProxy := openDB(t, proxyURL)
	e.workload(15, 200)
	p := e.projector("p", viaProxy, func(c *Config) { c.BatchSize = 40; c.MaxAttempts = 1 })
	if _, err := p.Step(ctx); err != nil { // one batch while the database is up
		t.Fatal(err)
	}
	proxy.Stop()
	for range 5 {
		if _, err := p.Step(ctx); err == nil {
			t.Fatal("step succeeded with the database down")
		}
	}
	if pending, _ := e.group(); pending != 40 {
		t.Fatalf("pending = %d during the outage, want the failed batch", pending)
	}
	if n := e.rdb.XLen(ctx, e.keys.DeadLetter()).Val(); n != 0 {
		t.Fatalf("%d entries dead-lettered during an outage", n)
	}
	proxy.Start()
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		if _, err := p.Step(ctx); err != nil {
			return false, err.Error()
		}
		return e.drained()
	})
	e.assertMatchesModel(e.db)
}

