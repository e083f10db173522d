package events_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestPartitionsOnARealCluster: on a 3-master Redis Cluster with 12
// partitions, every key a step of a stage touches lies in its partition's
// slot, the 12 partitions are served by all 3 masters, and joins,
// heartbeats, leaves, sweeps and the fanned-out reads of 100 stages work
// (no CROSSSLOT), each event in its partition's stream.
func TestPartitionsOnARealCluster(t *testing.T) {
	cluster := testutil.StartRedisCluster(t, 3)
	rdb := cluster.Client(t)
	ctx := context.Background()
	prefix := "vpc-" + testutil.RandomID(4)
	s, c := partitionedOn(rdb, prefix)

	var stages []string
	for i := range 100 {
		stages = append(stages, fmt.Sprintf("arn:aws:ivs:eu-central-1:123456789012:stage/cluster%03d", i))
	}
	users := []string{"ana", "ben"}

	// Where each slot is served.
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	master := func(slot int64) string {
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) {
				return r.Nodes[0].Addr
			}
		}
		t.Fatalf("slot %d is not served", slot)
		return ""
	}
	keySlot := func(key string) int64 {
		n, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	partSlot := make([]int64, parts)
	partsOf := map[string][]int{} // master -> its partitions
	for p := range parts {
		partSlot[p] = keySlot("{p" + fmt.Sprint(p) + "}")
		m := master(partSlot[p])
		partsOf[m] = append(partsOf[m], p)
	}
	if len(partsOf) != 3 {
		t.Fatalf("the 12 partitions are served by %d masters, want all 3: %v", len(partsOf), partsOf)
	}
	seen := map[int]bool{}
	for _, st := range stages {
		p := events.PartitionOf(st, parts)
		seen[p] = true
		k := s.KeysOf(st)
		keys := []string{k.Stream(), k.Stages(), k.StageNames(), k.Present(st), k.Members(st),
			k.Capacity(), k.Peak(st, c.Now()), k.DeadLetter(), k.Lease()}
		for _, u := range users {
			keys = append(keys, k.SessionBucket(events.UserBucket(u)))
		}
		for _, key := range keys {
			if got := keySlot(key); got != partSlot[p] {
				t.Fatalf("%s (stage %s of partition %d) is in slot %d, the partition's is %d", key, st, p, got, partSlot[p])
			}
		}
	}
	if len(seen) != parts {
		t.Fatalf("the 100 stages fall in %d partitions, want all %d", len(seen), parts)
	}

	// Joins, heartbeats and leaves of every stage, concurrently, so that
	// the shared pipelines carry steps of several nodes at once.
	each := func(step func(st string) error) {
		t.Helper()
		p := pool.New().WithErrors().WithMaxGoroutines(16)
		for _, st := range stages {
			p.Go(func() error { return step(st) })
		}
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	sessions := map[string][]string{}
	joined := make(chan [2]string, len(stages)*len(users))
	each(func(st string) error {
		for _, u := range users {
			j, err := s.Join(ctx, events.JoinRequest{Stage: st, User: u, IP: "203.0.113.7"})
			if err != nil {
				return fmt.Errorf("join %s: %w", st, err)
			}
			joined <- [2]string{st, j.Session}
		}
		return s.SetCapacity(ctx, st, 10)
	})
	close(joined)
	for j := range joined {
		sessions[j[0]] = append(sessions[j[0]], j[1])
	}
	c.Add(30 * time.Second)
	each(func(st string) error {
		for _, sid := range sessions[st] {
			if n, err := s.Heartbeat(ctx, sid); err != nil || n != 2 {
				return fmt.Errorf("heartbeat %s = %d, %w", st, n, err)
			}
		}
		if closed, err := s.Leave(ctx, sessions[st][0]); err != nil || !closed {
			return fmt.Errorf("leave %s = %v, %w", st, closed, err)
		}
		return nil
	})

	perPart := make([]int, parts)
	for _, st := range stages {
		perPart[events.PartitionOf(st, parts)]++
		if n, err := s.Count(ctx, st); err != nil || n != 1 {
			t.Fatalf("count of %s = %d, %v, want 1", st, n, err)
		}
		if a, ok, err := s.Active(ctx, st); err != nil || !ok || a.Viewers != 1 {
			t.Fatalf("Active(%s) = %+v %v %v", st, a, ok, err)
		}
		if v, err := s.Present(ctx, st, 0); err != nil || len(v) != 1 {
			t.Fatalf("Present(%s) = %+v, %v", st, v, err)
		}
		if peak, err := s.Peak(ctx, st, c.Now().Add(-time.Hour), c.Now().Add(time.Minute)); err != nil || peak != 2 {
			t.Fatalf("Peak(%s) = %d, %v, want 2", st, peak, err)
		}
	}
	if a, ok, err := s.Active(ctx, stages[0]+"-never"); err != nil || ok || a.Viewers != 0 {
		t.Fatalf("Active of a stage never joined = %+v %v %v", a, ok, err)
	}
	for p, es := range checkPartitionStreams(t, s) {
		// per stage: 2 joins, 2 heartbeats, 1 leave
		if len(es) != 5*perPart[p] {
			t.Errorf("partition %d's stream holds %d events, want %d for its %d stages", p, len(es), 5*perPart[p], perPart[p])
		}
	}
	listed, err := s.Stages(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range listed {
		names = append(names, st.Stage)
		if st.Viewers != 1 {
			t.Errorf("Stages(): %s has %d viewers, want 1", st.Stage, st.Viewers)
		}
	}
	if slices.Sort(names); !slices.Equal(names, stages) {
		t.Fatalf("Stages() lists %d stages, want the 100: %v", len(names), names)
	}
	if caps, err := s.Capacities(ctx); err != nil || len(caps) != len(stages) {
		t.Fatalf("Capacities() holds %d, %v, want %d", len(caps), err, len(stages))
	}
	if n, err := s.OpenSessions(ctx); err != nil || n != int64(len(stages)) {
		t.Fatalf("OpenSessions() = %d, %v, want %d", n, err, len(stages))
	}

	// The remaining viewers go silent; a sweep of every stage closes them
	// in their partitions, and the stages are forgotten.
	c.Add(s.Timeout())
	each(func(st string) error {
		n, err := s.Sweep(ctx, st, 10, c.Now())
		if err != nil || n != 1 {
			return fmt.Errorf("sweep %s closed %d, %w", st, n, err)
		}
		return nil
	})
	timedOut := map[string]int{}
	for _, es := range checkPartitionStreams(t, s) {
		for _, e := range es {
			if e.Type == events.Timeout {
				timedOut[e.Session]++
			}
		}
	}
	want := map[string]int{}
	for _, st := range stages {
		want[sessions[st][1]] = 1
	}
	if !maps.Equal(timedOut, want) {
		t.Fatalf("timeout events by session: %d sessions, want one each of %d", len(timedOut), len(want))
	}
	if listed, err := s.Stages(ctx, time.Time{}); err != nil || len(listed) != 0 {
		t.Fatalf("Stages() after the sweeps = %d stages, %v", len(listed), err)
	}
	if err := s.ForgetPeaks(ctx, stages, c.Now().Add(-time.Hour), c.Now()); err != nil {
		t.Fatalf("ForgetPeaks over every partition: %v", err)
	}
}
