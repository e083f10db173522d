package snapshotter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sourcegraph/conc"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/snapshotter"
	"github.com/viewpulse/viewpulse/store"
)

// TestTwoSnapshottersOnAClusterOfTwelvePartitions: on a real 3-master
// cluster with 12 partitions, two snapshotters sweeping and snapshotting at
// once give every silent viewer of every partition exactly one timeout
// event, close nobody present, and write one row per stage and boundary for
// the stages of every partition.
func TestTwoSnapshottersOnAClusterOfTwelvePartitions(t *testing.T) {
	t.Parallel()
	const parts, perPart, viewers = 12, 2, 8
	cluster := testutil.StartRedisCluster(t, 3)
	e := NewEnvOn(t, cluster.Client(t), "vpc-"+testutil.RandomID(4), parts)

	var stages []string
	count := make([]int, parts)
	for i := 0; len(stages) < parts*perPart; i++ {
		st := fmt.Sprintf("arn:aws:ivs:us-east-1:123456789012:stage/snap%03d", i)
		if p := events.PartitionOf(st, parts); count[p] < perPart {
			count[p]++
			stages = append(stages, st)
		}
	}
	silent, kept := map[string]bool{}, map[string]bool{}
	for _, st := range stages {
		for v := range viewers {
			sid := e.joinAt(t, noon.Add(-time.Minute), st, fmt.Sprint("u", v))
			if v%2 == 0 {
				kept[sid] = true
			} else {
				silent[sid] = true
			}
		}
	}
	// A small limit makes each sweeper loop over several Redis steps per
	// stage, so the two interleave.
	a, regA := e.NewSnapshotter(t, snapshotter.Config{SweepLimit: 3})
	b, regB := e.NewSnapshotter(t, snapshotter.Config{SweepLimit: 3})
	both := func(step func(s *snapshotter.Snapshotter) error) {
		t.Helper()
		var wg conc.WaitGroup
		for range 3 {
			for _, s := range []*snapshotter.Snapshotter{a, b} {
				wg.Go(func() {
					if err := step(s); err != nil {
						t.Error(err)
					}
				})
			}
		}
		wg.Wait()
	}
	snapshot := func(boundary time.Time) {
		t.Helper()
		e.Clock.Set(boundary.Add(3 * time.Millisecond))
		both(func(s *snapshotter.Snapshotter) error {
			_, err := s.SnapshotAt(context.Background(), boundary)
			return err
		})
	}

	snapshot(noon)
	for sid := range kept {
		e.heartbeatAt(t, noon.Add(30*time.Second), sid)
	}
	e.Clock.Set(noon.Add(-time.Minute + timeout)) // the silent ones are at the timeout
	both(func(s *snapshotter.Snapshotter) error { return s.SweepOnce(context.Background()) })

	got := e.timeouts(t)
	for sid := range silent {
		if len(got[sid]) != 1 {
			t.Errorf("silent session %s: %d timeout events, want 1", sid, len(got[sid]))
		}
	}
	for sid := range kept {
		if len(got[sid]) != 0 {
			t.Errorf("present session %s was timed out", sid)
		}
	}
	total := testutil.Metric(t, regA, "viewpulse_snapshotter_timeouts_total") + testutil.Metric(t, regB, "viewpulse_snapshotter_timeouts_total")
	if len(got) != len(silent) || total != float64(len(silent)) {
		t.Fatalf("timed-out sessions = %d, counted by the sweepers = %v, want %d", len(got), total, len(silent))
	}
	for _, st := range stages {
		if n := e.count(t, st); n != viewers/2 {
			t.Fatalf("%s: %d present after the sweeps, want %d", st, n, viewers/2)
		}
	}

	for _, at := range []time.Duration{2 * time.Minute, 3*time.Minute + 30*time.Second} {
		for sid := range kept { // fails the test if a sweep closed the session
			e.heartbeatAt(t, noon.Add(at), sid)
		}
	}
	snapshot(noon.Add(every))
	for _, st := range stages {
		want := []store.Snapshot{
			{Stage: st, Time: noon, Viewers: viewers, Peak: viewers},
			{Stage: st, Time: noon.Add(every), Viewers: viewers / 2, Peak: viewers},
		}
		if rows := e.snapshots(t, st); fmt.Sprint(rows) != fmt.Sprint(want) {
			t.Errorf("%s (partition %d): rows = %+v\nwant %+v", st, events.PartitionOf(st, parts), rows, want)
		}
	}
}
