package events_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// parts is the number of partitions these tests deploy: a multiple of the
// test cluster's 3 masters (DESIGN, "Redis Cluster").
const parts = 12

// newPartitioned returns a stream of parts partitions on the test Redis
// under a prefix of the test's own, on a clock of its own.
func newPartitioned(t *testing.T) (*events.Stream, *redis.Client, *testutil.Clock) {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	s, c := partitionedOn(rdb, prefix)
	return s, rdb, c
}

// partitionedOn returns a stream of parts partitions on rdb under prefix,
// on a clock of its own.
func partitionedOn(rdb redis.UniversalClient, prefix string) (*events.Stream, *testutil.Clock) {
	c := testutil.NewClock(time.UnixMilli(1_760_000_000_000))
	s := events.NewPartitionedStream(rdb, prefix, 120*time.Second, parts)
	s.Now = c.Now
	return s, c
}

// stagesByPartition returns perPart stage ARNs of each of n partitions,
// indexed by partition.
func stagesByPartition(n, perPart int) [][]string {
	out := make([][]string, n)
	for i, left := 0, n*perPart; left > 0; i++ {
		s := fmt.Sprintf("arn:aws:ivs:us-east-1:123456789012:stage/part%04d", i)
		if p := events.PartitionOf(s, n); len(out[p]) < perPart {
			out[p] = append(out[p], s)
			left--
		}
	}
	return out
}

// readStream decodes every entry of the stream at key.
func readStream(t *testing.T, rdb redis.UniversalClient, key string) []events.Event {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]events.Event, len(msgs))
	for i, m := range msgs {
		e, err := events.Decode(m.ID, m.Values)
		if err != nil {
			t.Fatalf("entry %s %v: %v", m.ID, m.Values, err)
		}
		out[i] = e
	}
	return out
}

// checkPartitionStreams checks that every event in partition p's stream is
// of a stage of p, for every p, and returns the events by partition.
func checkPartitionStreams(t *testing.T, s *events.Stream) [][]events.Event {
	t.Helper()
	out := make([][]events.Event, s.Partitions())
	for p := range out {
		out[p] = readStream(t, s.Client(), s.PartitionKeys(p).Stream())
		for _, e := range out[p] {
			if got := events.PartitionOf(e.Stage, s.Partitions()); got != p {
				t.Errorf("partition %d's stream holds a %s of %s, a stage of partition %d", p, e.Type, e.Stage, got)
			}
		}
	}
	return out
}

// dumpPrefix returns every key under prefix with its serialized value
// (DUMP): equal dumps mean nothing changed.
func dumpPrefix(t *testing.T, rdb *redis.Client, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		out[iter.Val()] = rdb.Dump(ctx, iter.Val()).Val()
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEventsLandInTheirPartition: with 12 partitions each stage's joins,
// heartbeats and leaves are in its partition's stream and no other, and
// heartbeat and leave find the session from its ID alone.
func TestEventsLandInTheirPartition(t *testing.T) {
	s, _, c := newPartitioned(t)
	ctx := context.Background()
	byPart := stagesByPartition(parts, 3)
	var sessions []string
	for p, stages := range byPart {
		for _, st := range stages {
			j, err := s.Join(ctx, events.JoinRequest{Stage: st, User: "u-" + st})
			if err != nil {
				t.Fatal(err)
			}
			if ref, err := events.ParseSessionID(j.Session); err != nil || ref.Partition != p || ref.Stage != events.StageHash(st) {
				t.Fatalf("session of %s (partition %d): %+v %v", st, p, ref, err)
			}
			sessions = append(sessions, j.Session)
		}
	}
	c.Add(30 * time.Second)
	for _, sid := range sessions {
		if n, err := s.Heartbeat(ctx, sid); err != nil || n != 1 {
			t.Fatalf("heartbeat %s = %d, %v", sid, n, err)
		}
	}
	listed, err := s.Stages(ctx, time.Time{})
	if err != nil || len(listed) != parts*3 {
		t.Fatalf("Stages() lists %d stages of %d, %v", len(listed), parts*3, err)
	}
	for _, st := range listed {
		if st.Viewers != 1 {
			t.Errorf("%s: %d viewers, want 1", st.Stage, st.Viewers)
		}
	}
	c.Add(time.Second)
	for _, sid := range sessions {
		if closed, err := s.Leave(ctx, sid); err != nil || !closed {
			t.Fatalf("leave %s = %v, %v", sid, closed, err)
		}
	}
	for p, es := range checkPartitionStreams(t, s) {
		if got := types(es); got != strings.Repeat("join ", 3)+strings.Repeat("heartbeat ", 3)+strings.Repeat("leave ", 3) {
			t.Errorf("partition %d's stream: %s", p, got)
		}
		var stages []string
		for _, e := range es {
			stages = append(stages, e.Stage)
		}
		slices.Sort(stages)
		if want := slices.Sorted(slices.Values(byPart[p])); !slices.Equal(slices.Compact(stages), want) {
			t.Errorf("partition %d's stream names stages %v, want %v", p, slices.Compact(stages), want)
		}
	}
	if n, err := s.OpenSessions(ctx); err != nil || n != 0 {
		t.Fatalf("open sessions after every leave = %d, %v", n, err)
	}
}

// TestForeignSessionIDsFindNothing: a session ID that names a partition
// the deployment does not have, another partition, bucket or stage than the
// session's, other random bits, or no valid form at all finds no session,
// and heartbeat and leave with it change nothing in Redis.
func TestForeignSessionIDsFindNothing(t *testing.T) {
	s, rdb, c := newPartitioned(t)
	ctx := context.Background()
	st := stagesByPartition(parts, 1)[5][0]
	j, err := s.Join(ctx, events.JoinRequest{Stage: st, User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	sid := j.Session
	other := events.NewSessionID(c.Now(), 5, "bob", st) // well formed, never joined
	swap := func(at int, with string) string { return sid[:at] + with + sid[at+len(with):] }
	flip := func(ch byte) string { // another Crockford character
		if ch == '0' {
			return "1"
		}
		return "0"
	}
	forged := []struct{ name, sid string }{
		{"partition 12 of 12", swap(26, "0C")},
		{"partition 13", swap(26, "0D")},
		{"partition 1023", swap(26, "ZZ")},
		{"another partition", swap(26, "06")},
		{"another bucket", swap(28, flip(sid[28])+flip(sid[29]))},
		{"another stage hash", swap(30, events.StageHash(st+"x"))},
		{"other random bits", swap(25, flip(sid[25]))},
		{"another time", swap(0, flip(sid[0]))},
		{"a session never joined", other},
		{"lower case", strings.ToLower(sid)},
		{"not Crockford", swap(30, "UUUU")},
		{"too short", sid[:39]},
		{"too long", sid + "0"},
		{"a bare ULID", sid[:26]},
		{"empty", ""},
	}
	before := dumpPrefix(t, rdb, s.Prefix())
	c.Add(time.Second)
	for _, f := range forged {
		if f.sid == sid {
			t.Fatalf("%s: the forgery is the session ID itself", f.name)
		}
		if _, err := s.Heartbeat(ctx, f.sid); !errors.Is(err, events.ErrSessionNotFound) {
			t.Errorf("heartbeat with %s (%q): %v, want ErrSessionNotFound", f.name, f.sid, err)
		}
		if closed, err := s.Leave(ctx, f.sid); err != nil || closed {
			t.Errorf("leave with %s (%q) = %v, %v, want nothing to close", f.name, f.sid, closed, err)
		}
	}
	if after := dumpPrefix(t, rdb, s.Prefix()); !maps.Equal(before, after) {
		t.Fatalf("forged IDs changed Redis: keys before %v, after %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	if n, err := s.Heartbeat(ctx, sid); err != nil || n != 1 {
		t.Fatalf("the real session after the forgeries: %d, %v", n, err)
	}
}

// TestBackpressureIsPerPartition: the bound is on each partition's own
// backlog. With one partition's stream full, that partition's stages are
// refused and every other partition's are not.
func TestBackpressureIsPerPartition(t *testing.T) {
	s, _, _ := newPartitioned(t)
	ctx := context.Background()
	s.MaxLen = 2
	byPart := stagesByPartition(parts, 2)
	full, sibling := byPart[3][0], byPart[3][1]
	a, err := s.Join(ctx, events.JoinRequest{Stage: full, User: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(ctx, events.JoinRequest{Stage: full, User: "b"}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{full, sibling} {
		if _, err := s.Join(ctx, events.JoinRequest{Stage: st, User: "c"}); !errors.Is(err, events.ErrBackpressure) {
			t.Fatalf("join to %s of the full partition: %v, want ErrBackpressure", st, err)
		}
	}
	if _, err := s.Heartbeat(ctx, a.Session); !errors.Is(err, events.ErrBackpressure) {
		t.Fatalf("heartbeat in the full partition: %v, want ErrBackpressure", err)
	}
	for p, stages := range byPart {
		if p == 3 {
			continue
		}
		j, err := s.Join(ctx, events.JoinRequest{Stage: stages[0], User: "c"})
		if err != nil {
			t.Fatalf("join to %s of partition %d beside a full partition 3: %v", stages[0], p, err)
		}
		if _, err := s.Heartbeat(ctx, j.Session); err != nil {
			t.Fatalf("heartbeat in partition %d beside a full partition 3: %v", p, err)
		}
	}
	for p, es := range checkPartitionStreams(t, s) {
		// partition 3: its two joins; every other: a join and a heartbeat
		if len(es) != 2 {
			t.Errorf("partition %d's stream holds %d entries (%s), want 2", p, len(es), types(es))
		}
	}
	if n, _ := s.Count(ctx, full); n != 2 {
		t.Fatalf("count of the full partition's stage = %d, want 2", n)
	}
}

// TestFanOutsCoverEveryPartition: Stages, Capacities and OpenSessions read
// every partition; a stage's capacity lives in its own partition's hash and
// is enforced there.
func TestFanOutsCoverEveryPartition(t *testing.T) {
	s, rdb, _ := newPartitioned(t)
	ctx := context.Background()
	byPart := stagesByPartition(parts, 2)
	wantCaps := map[string]int{}
	for p, stages := range byPart {
		st := stages[0]
		if err := s.SetCapacity(ctx, st, p+1); err != nil {
			t.Fatal(err)
		}
		wantCaps[st] = p + 1
		for q := range parts {
			has, err := rdb.HExists(ctx, s.PartitionKeys(q).Capacity(), st).Result()
			if err != nil || has != (q == p) {
				t.Fatalf("capacity of %s (partition %d) in partition %d's hash: %v %v", st, p, q, has, err)
			}
		}
		for i := range p + 2 { // one more than the capacity
			_, err := s.Join(ctx, events.JoinRequest{Stage: st, User: fmt.Sprint("u", i)})
			if full := i == p+1; full != errors.Is(err, events.ErrStageFull) || (!full && err != nil) {
				t.Fatalf("viewer %d of %s (capacity %d): %v", i+1, st, p+1, err)
			}
		}
		if _, err := s.Join(ctx, events.JoinRequest{Stage: stages[1], User: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	caps, err := s.Capacities(ctx)
	if err != nil || !maps.Equal(caps, wantCaps) {
		t.Fatalf("Capacities() = %v, %v, want %v", caps, err, wantCaps)
	}
	listed, err := s.Stages(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got, want := map[string]int64{}, map[string]int64{}
	var open int64
	for p, stages := range byPart {
		want[stages[0]], want[stages[1]] = int64(p+1), 1
		open += int64(p + 2)
	}
	for _, st := range listed {
		got[st.Stage] = st.Viewers
	}
	if !maps.Equal(got, want) {
		t.Fatalf("Stages() = %v, want %v", got, want)
	}
	if n, err := s.OpenSessions(ctx); err != nil || n != open {
		t.Fatalf("OpenSessions() = %d, %v, want %d", n, err, open)
	}
	st := byPart[7][0]
	if err := s.SetCapacity(ctx, st, 0); err != nil {
		t.Fatal(err)
	}
	if caps, _ := s.Capacities(ctx); len(caps) != parts-1 || caps[st] != 0 {
		t.Fatalf("after lifting %s's limit: %v", st, caps)
	}
	if _, err := s.Join(ctx, events.JoinRequest{Stage: st, User: "late"}); err != nil {
		t.Fatalf("join after lifting the limit: %v", err)
	}
}

// TestSweepClosesSilentViewersInEveryPartition: Sweep routes by stage, so
// silent viewers of every partition get one timeout event each, in their
// partition's stream, and present ones stay.
func TestSweepClosesSilentViewersInEveryPartition(t *testing.T) {
	s, _, c := newPartitioned(t)
	ctx := context.Background()
	byPart := stagesByPartition(parts, 2)
	silent, kept := map[string]bool{}, map[string]string{}
	for _, stages := range byPart {
		for _, st := range stages {
			for _, u := range []string{"quiet1", "quiet2", "stays"} {
				j, err := s.Join(ctx, events.JoinRequest{Stage: st, User: u})
				if err != nil {
					t.Fatal(err)
				}
				if u == "stays" {
					kept[j.Session] = st
				} else {
					silent[j.Session] = true
				}
			}
		}
	}
	c.Add(100 * time.Second)
	for sid := range kept {
		if _, err := s.Heartbeat(ctx, sid); err != nil {
			t.Fatal(err)
		}
	}
	c.Add(20 * time.Second) // the silent ones are at the timeout, the others 20 s in
	for _, stages := range byPart {
		for _, st := range stages {
			if n, err := s.Sweep(ctx, st, 100, time.Time{}); err != nil || n != 2 {
				t.Fatalf("sweep %s closed %d, %v, want 2", st, n, err)
			}
			if n, err := s.Count(ctx, st); err != nil || n != 1 {
				t.Fatalf("count of %s after the sweep = %d, %v", st, n, err)
			}
		}
	}
	timedOut := map[string]int{}
	for p, es := range checkPartitionStreams(t, s) {
		n := 0
		for _, e := range es {
			if e.Type == events.Timeout {
				timedOut[e.Session]++
				n++
			}
		}
		if n != 4 {
			t.Errorf("partition %d: %d timeout events, want 4", p, n)
		}
	}
	if len(timedOut) != len(silent) {
		t.Fatalf("%d sessions timed out, want %d", len(timedOut), len(silent))
	}
	for sid, n := range timedOut {
		if !silent[sid] || n != 1 {
			t.Errorf("session %s: %d timeout events (silent: %v)", sid, n, silent[sid])
		}
	}
	for sid := range kept {
		if _, err := s.Heartbeat(ctx, sid); err != nil {
			t.Errorf("present viewer's session %s after the sweep: %v", sid, err)
		}
	}
}

// TestStageCollisionRefusesJoin: when the stage's partition already names
// its StageHash for another ARN, the join is refused with ErrStageCollision
// and nothing is recorded; once that name is gone the join succeeds.
func TestStageCollisionRefusesJoin(t *testing.T) {
	s, rdb, _ := newPartitioned(t)
	ctx := context.Background()
	st := stagesByPartition(parts, 1)[9][0]
	names := s.KeysOf(st).StageNames()
	const squatter = "arn:aws:ivs:us-east-1:123456789012:stage/squatter"
	if err := rdb.HSet(ctx, names, events.StageHash(st), squatter).Err(); err != nil {
		t.Fatal(err)
	}
	before := dumpPrefix(t, rdb, s.Prefix())
	if _, err := s.Join(ctx, events.JoinRequest{Stage: st, User: "alice"}); !errors.Is(err, events.ErrStageCollision) {
		t.Fatalf("join to a stage whose hash names another: %v, want ErrStageCollision", err)
	}
	if after := dumpPrefix(t, rdb, s.Prefix()); !maps.Equal(before, after) {
		t.Fatalf("a refused join changed Redis: keys before %v, after %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	if got := rdb.HGet(ctx, names, events.StageHash(st)).Val(); got != squatter {
		t.Fatalf("the other stage's name became %q", got)
	}
	if err := rdb.HDel(ctx, names, events.StageHash(st)).Err(); err != nil {
		t.Fatal(err)
	}
	if j, err := s.Join(ctx, events.JoinRequest{Stage: st, User: "alice"}); err != nil || j.Viewers != 1 {
		t.Fatalf("join once the name is free: %+v, %v", j, err)
	}
}

// TestCheckPartitions: the first start records its number of partitions,
// the same number is accepted again, another is refused with a message
// naming both, an out-of-range one is refused without touching the record,
// and a stream of the layout before partitions is reported.
func TestCheckPartitions(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	ctx := context.Background()
	meta := events.NewKeys(prefix).Meta()
	if old, err := events.CheckPartitions(ctx, rdb, prefix, 12); err != nil || old {
		t.Fatalf("first start: old=%v, %v", old, err)
	}
	if got := rdb.HGet(ctx, meta, "partitions").Val(); got != "12" {
		t.Fatalf("recorded partitions = %q, want 12", got)
	}
	if old, err := events.CheckPartitions(ctx, rdb, prefix, 12); err != nil || old {
		t.Fatalf("restart with the same number: old=%v, %v", old, err)
	}
	_, err := events.CheckPartitions(ctx, rdb, prefix, 3)
	if !errors.Is(err, events.ErrPartitionsChanged) || !strings.Contains(err.Error(), "PARTITIONS=3") || !strings.Contains(err.Error(), "created with 12") {
		t.Fatalf("restart with 3: %v, want ErrPartitionsChanged naming 3 and 12", err)
	}
	for _, n := range []int{0, -1, events.MaxPartitions + 1} {
		if _, err := events.CheckPartitions(ctx, rdb, prefix, n); err == nil || errors.Is(err, events.ErrPartitionsChanged) {
			t.Errorf("PARTITIONS=%d: %v, want an out-of-range error", n, err)
		}
	}
	if got := rdb.HGet(ctx, meta, "partitions").Val(); got != "12" {
		t.Fatalf("refused starts changed the record to %q", got)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: prefix + ":{0}:events", Values: []string{"v", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if old, err := events.CheckPartitions(ctx, rdb, prefix, 12); err != nil || !old {
		t.Fatalf("with an old-layout stream: old=%v, %v, want true", old, err)
	}
	// Another prefix is another deployment.
	other := prefix + "-b"
	t.Cleanup(func() { rdb.Del(context.Background(), events.NewKeys(other).Meta()) })
	if _, err := events.CheckPartitions(ctx, rdb, other, 3); err != nil {
		t.Fatalf("another prefix with 3: %v", err)
	}
}
