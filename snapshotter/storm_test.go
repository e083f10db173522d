package snapshotter_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/snapshotter"
)

// A storm of 5,000 stages, each joined once and then left or abandoned,
// leaves nothing behind in Redis once its viewers are closed, its peaks used
// by a snapshot and its stages forgotten by the sweeps: the live state
// returns to what it was before, key for key and within a few bytes.
func TestStageStormLeavesNothingBehind(t *testing.T) {
	e := NewEnv(t)
	s, _ := e.NewSnapshotter(t, snapshotter.Config{})
	ctx := context.Background()

	// One viewer stays throughout, so that the baseline has live state.
	stay := e.joinAt(t, noon.Add(time.Second), stageA, "stayer")
	keepUp := func(to time.Time) { // the stayer heartbeats every 30 s
		for at := e.Clock.Now().Add(30 * time.Second); !at.After(to); at = at.Add(30 * time.Second) {
			e.heartbeatAt(t, at, stay)
		}
	}
	keepUp(noon.Add(every))
	e.snapshotAt(t, s, noon.Add(every))
	baseline := e.liveState(t)

	const stages = 5000
	var after []liveState
	for round := range 2 {
		base := noon.Add(time.Duration(1+6*round) * every)
		e.Clock.Set(base.Add(time.Second))
		p := pool.New().WithErrors().WithMaxGoroutines(32)
		for i := range stages {
			p.Go(func() error {
				stage := fmt.Sprintf("arn:aws:ivs:us-east-1:123456789012:stage/storm-%d-%d", round, i)
				r, err := e.Stream.Join(ctx, events.JoinRequest{Stage: stage, User: fmt.Sprint("u", i)})
				if err != nil || i%2 == 1 {
					return err // odd ones vanish without a leave
				}
				_, err = e.Stream.Leave(ctx, r.Session)
				return err
			})
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		storm := e.liveState(t)
		if n := storm.fields["stagenames"]; n < stages/2 {
			t.Fatalf("%d stage names during the storm; the odd half is still open", n)
		}
		// The sweeps close the silent half, snapshots use the peaks and
		// write each stage's 0 row, and idle stages are forgotten.
		for m := 1; m <= 6; m++ {
			b := base.Add(time.Duration(m) * every)
			keepUp(b)
			e.sweepAt(t, s, b)
			e.snapshotAt(t, s, b)
		}
		st := e.liveState(t)
		t.Logf("storm %d: live state without the stream: before %d keys %d B, during %d keys %d B, after %d keys %d B",
			round+1, len(baseline.keys), baseline.bytes, len(storm.keys), storm.bytes, len(st.keys), st.bytes)
		after = append(after, st)
	}
	if n := len(e.timeouts(t)); n != stages {
		t.Fatalf("%d timeouts, want %d", n, stages)
	}
	for _, st := range after {
		if !slices.Equal(st.keys, baseline.keys) {
			t.Errorf("keys after a storm differ from before:\n after  %v\n before %v", st.keys, baseline.keys)
		}
		for k, n := range st.fields {
			if n > baseline.fields[k] {
				t.Errorf("%s holds %d entries after a storm, %d before", k, n, baseline.fields[k])
			}
		}
	}
	// A hash or sorted set that grew past its compact encoding keeps the
	// larger one (Redis never converts back), a fixed cost that the second
	// storm must not add to.
	if first, second := after[0].bytes, after[1].bytes; first > baseline.bytes+16<<10 || second > first+256 {
		t.Errorf("live state: %d B before, %d B after one storm, %d B after two", baseline.bytes, first, second)
	}
}

// liveState is every key of the deployment but the stream, sorted, with the
// entries of each hash and sorted set (named by what follows the hash tag)
// and their memory.
type liveState struct {
	keys   []string
	fields map[string]int64
	bytes  int64
}

func (e *Env) liveState(t *testing.T) liveState {
	t.Helper()
	ctx := context.Background()
	stream := e.Stream.Keys().Stream()
	var st liveState
	st.fields = map[string]int64{}
	iter := e.rdb.Scan(ctx, 0, e.prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if k == stream {
			continue
		}
		st.keys = append(st.keys, k)
		name := k[strings.Index(k, "}:")+2:]
		switch e.rdb.Type(ctx, k).Val() {
		case "hash":
			st.fields[name] = e.rdb.HLen(ctx, k).Val()
		case "zset":
			st.fields[name] = e.rdb.ZCard(ctx, k).Val()
		}
		st.bytes += e.rdb.MemoryUsage(ctx, k, 0).Val()
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(st.keys)
	return st
}
