package projector

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// runner is one Partitioned of a test, running until stopped.
type runner struct {
	*Partitioned
	name string
	stop context.CancelFunc
	done chan error
}

// fastLeases are short enough for a test to see takeovers in a second or two.
var fastLeases = LeaseConfig{TTL: 900 * time.Millisecond, Renew: 150 * time.Millisecond}

func (e *env) runPartitioned(name string, tune func(*Config)) *runner {
	e.t.Helper()
	cfg := Config{Consumer: name, BatchSize: 50, Block: 10 * time.Millisecond, Now: e.clock.Now,
		Log: slog.New(slog.DiscardHandler), MaintainEvery: time.Hour}
	if tune != nil {
		tune(&cfg)
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &runner{Partitioned: NewPartitioned(e.rdb, e.prefix, len(e.parts), e.db, cfg, fastLeases),
		name: name, stop: stop, done: make(chan error, 1)}
	go func() { r.done <- r.Run(ctx, time.Second) }()
	e.t.Cleanup(r.halt)
	return r
}

// halt stops r and waits for it (repeat-safe).
func (r *runner) halt() {
	r.stop()
	if r.done != nil {
		<-r.done
		r.done = nil
	}
}

// shares waits until the runners own disjoint sets of partitions covering
// all of them, each of size want (a count per runner), and every lease key
// names its owner.
func (e *env) shares(rs []*runner, want ...int) {
	e.t.Helper()
	testutil.Eventually(e.t, 30*time.Second, func() (bool, string) {
		seen := map[int]string{}
		var sizes []int
		for _, r := range rs {
			owned := r.Owned()
			sizes = append(sizes, len(owned))
			for _, p := range owned {
				if other, ok := seen[p]; ok {
					return false, fmt.Sprintf("partition %d read by %s and %s", p, other, r.name)
				}
				seen[p] = r.name
				if holder := e.rdb.Get(context.Background(), e.parts[p].Lease()).Val(); holder != r.name {
					return false, fmt.Sprintf("partition %d read by %s, lease held by %q", p, r.name, holder)
				}
			}
		}
		if len(seen) != len(e.parts) || !slices.Equal(sizes, want) {
			return false, fmt.Sprintf("shares %v over %d partitions, want %v over %d", sizes, len(seen), want, len(e.parts))
		}
		return true, ""
	})
}

// TestPartitionsAreSharedByLeases: three projector processes split twelve
// partitions four each, every partition read by one of them under its
// lease; when one stops the two others take its partitions (six each), and
// a newcomer gets its share back from them.
func TestPartitionsAreSharedByLeases(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	e := newEnvOn(t, rdb, prefix, 12, manyStages(36))
	a, b, c := e.runPartitioned("a", nil), e.runPartitioned("b", nil), e.runPartitioned("c", nil)
	e.shares([]*runner{a, b, c}, 4, 4, 4)
	c.halt()
	e.shares([]*runner{a, b}, 6, 6)
	d := e.runPartitioned("d", nil)
	e.shares([]*runner{a, b, d}, 4, 4, 4)
	// Everything written meanwhile is projected by whoever reads it.
	e.workload(5, 600)
	testutil.Eventually(t, 60*time.Second, e.drained)
	e.assertMatchesModel(e.db)
}

// TestLostLeaseStopsReading: a projector that finds its lease taken by
// another at renewal stops reading that partition (and counts it), and takes
// it again once it is free.
func TestLostLeaseStopsReading(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.runPartitioned("a", nil)
	e.shares([]*runner{a}, 1)
	if err := e.rdb.Set(context.Background(), e.keys.Lease(), "intruder", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return len(a.Owned()) == 0, fmt.Sprintf("owns %v", a.Owned())
	})
	if n := promtest.ToFloat64(a.m.LeasesLost); n != 1 {
		t.Fatalf("%v leases lost counted, want 1", n)
	}
	e.rdb.Del(context.Background(), e.keys.Lease())
	e.shares([]*runner{a}, 1)
}

// TestTakeoverProjectsTheDeadReadersEntriesAtOnce: entries a dead reader
// left pending are projected by the lease's next holder at once, although
// ClaimMinIdle (the takeover without leases) is an hour.
func TestTakeoverProjectsTheDeadReadersEntriesAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.workload(3, 300)
	dead := e.projector("dead", e.db, func(c *Config) {
		c.BatchSize = 1000
		c.BeforeApply = func([]string) error { return errCrash }
	})
	if _, err := dead.Step(context.Background()); err == nil {
		t.Fatal("the dead reader's step did not crash")
	}
	if pending, _ := e.group(); pending == 0 {
		t.Fatal("nothing pending on the dead reader: the test checks nothing")
	}
	e.runPartitioned("heir", func(c *Config) { c.ClaimMinIdle = time.Hour })
	testutil.Eventually(t, 30*time.Second, e.drained)
	e.assertMatchesModel(e.db)
}

// TestOracleOnRedisCluster: on a real 3-master Redis Cluster, twelve
// partitions, three projector processes that crash before commits and
// between commits and acknowledgements, one of them stopped and another
// started mid-way, and duplicated entries: the rows equal the sequential
// model of every partition's stream, every column.
func TestOracleOnRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testutil.StartRedisCluster(t, 3)
	e := newEnvOn(t, cluster.Client(t), "oracle", 12, manyStages(36))
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(17, 17))
	crashy := func(c *Config) {
		mu.Lock()
		c.BatchSize = 10 + r.IntN(40)
		mu.Unlock()
		c.BeforeApply = func([]string) error {
			mu.Lock()
			defer mu.Unlock()
			if r.IntN(12) == 0 {
				return errCrash
			}
			return nil
		}
		c.AfterCommit = func([]string) error {
			mu.Lock()
			defer mu.Unlock()
			if r.IntN(8) == 0 {
				return errCrash // committed, never acknowledged: read again
			}
			return nil
		}
	}
	a, b, c := e.runPartitioned("a", crashy), e.runPartitioned("b", crashy), e.runPartitioned("c", crashy)
	e.workload(11, 800)
	c.halt()
	d := e.runPartitioned("d", crashy)
	e.workload(12, 800)
	testutil.Eventually(t, 90*time.Second, e.drained)
	e.shares([]*runner{a, b, d}, 4, 4, 4)
	for _, k := range e.parts {
		if n := e.rdb.XLen(context.Background(), k.Stream()).Val(); n == 0 {
			t.Errorf("partition %d's stream is empty: the workload missed it", k.Partition())
		}
	}
	e.assertMatchesModel(e.db)
}

// manyStages returns n stage ARNs (enough to reach every partition).
func manyStages(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("arn:aws:ivs:us-east-1:123456789012:stage/part%03d", i)
	}
	return out
}
