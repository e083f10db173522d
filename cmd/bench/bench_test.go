package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/projector"
)

// TestMixIsARealisticSessionLog checks the generated events: every session
// has one join first, heartbeats, and one closing event last, with joined
// and last_seen, and one in five closes by timeout.
func TestMixIsARealisticSessionLog(t *testing.T) {
	const n = 4000 // 100 sessions
	start := time.Unix(1_760_000_000, 0)
	type seen struct{ joins, beats, closes, timeouts int }
	by := map[string]*seen{}
	counts := map[events.Type]int{}
	for i := range n {
		e := mix(i, n, start)
		if _, err := events.Decode("1-0", values(e)); err != nil {
			t.Fatalf("event %d does not decode: %v", i, err)
		}
		s := by[e.Session]
		if s == nil {
			s = &seen{}
			by[e.Session] = s
		}
		if s.closes > 0 {
			t.Fatalf("event %d of %s after its close", i, e.Session)
		}
		switch e.Type {
		case events.Join:
			s.joins++
		case events.Heartbeat:
			if s.joins == 0 {
				t.Fatalf("heartbeat of %s before its join", e.Session)
			}
			s.beats++
		case events.Timeout:
			s.timeouts++
			fallthrough
		case events.Leave:
			s.closes++
		}
		counts[e.Type]++
	}
	if len(by) != n/perSession {
		t.Fatalf("%d sessions, want %d", len(by), n/perSession)
	}
	for id, s := range by {
		if s.joins != 1 || s.closes != 1 || s.beats != perSession-2 {
			t.Fatalf("session %s: %+v", id, *s)
		}
	}
	if counts[events.Timeout] != 20 || counts[events.Leave] != 80 {
		t.Errorf("closes %v: want 80 leaves and 20 timeouts", counts)
	}
}

func values(e events.Event) map[string]any {
	v := e.Values()
	m := map[string]any{}
	for i := 0; i < len(v); i += 2 {
		m[v[i].(string)] = v[i+1]
	}
	return m
}

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6379": true, "localhost:5432": true, "[::1]:80": true, "127.0.0.1": true,
		"10.0.0.1:6379": false, "example.com:5432": false, "0.0.0.0:80": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestTableMarksTargets(t *testing.T) {
	r := &Results{
		Heartbeat: Search{Best: Step{Achieved: 6000, P99Ms: 20}}, HeartbeatCeiling: Search{Best: Step{Achieved: 10000}},
		Join: Search{Best: Step{Achieved: 3000}}, JoinCeiling: Search{Best: Step{Achieved: 10000}},
		RedisViewers: 100_000, RedisBytesPerViewer: 190,
	}
	r.compute()
	var b strings.Builder
	r.Table(&b)
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[1], "0.60x") || !strings.HasSuffix(strings.TrimSpace(lines[1]), "yes") {
		t.Errorf("heartbeat line: %q", lines[1])
	}
	if !strings.Contains(lines[2], "0.30x") || !strings.HasSuffix(strings.TrimSpace(lines[2]), "NO") {
		t.Errorf("join line: %q", lines[2])
	}
}

func TestProcCPUCountsFromTheCommandName(t *testing.T) {
	// utime 250 and stime 50 ticks; the command name holds a space and a ')'.
	stat := "4242 (ingest) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 123 456 789"
	got, err := procCPU([]byte(stat))
	if err != nil || got != 3.0 {
		t.Fatalf("procCPU = %v, %v; want 3 s", got, err)
	}
	if _, err := procCPU([]byte("4242 (ingest) S 1")); err == nil {
		t.Error("a short stat line was accepted")
	}
}

func TestRedisCPUSumsSysAndUserAndCommands(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.000000\r\nused_cpu_user_main_thread:2.000000\r\n\r\n" +
		"# Commandstats\r\ncmdstat_evalsha:calls=10,usec=1500000,usec_per_call=150000.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_ping:calls=3,usec=500000,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n"
	cpu, cmds, err := redisCPU(info)
	if err != nil || cpu != 3.75 || cmds != 2 {
		t.Fatalf("redisCPU = %v, %v, %v; want 3.75 s, 2 s", cpu, cmds, err)
	}
	if _, _, err := redisCPU("# CPU\r\nused_cpu_sys:1\r\n"); err == nil {
		t.Error("INFO cpu without used_cpu_user was accepted")
	}
}

func TestUsPerRequest(t *testing.T) {
	if got := usPer(1.5, 20_000); got != 75 {
		t.Errorf("1.5 s over 20,000 requests = %v us, want 75", got)
	}
	if got := usPer(1, 0); got != 0 {
		t.Errorf("no requests = %v, want 0", got)
	}
}

// planMoves evens out the partitions over the masters with the fewest
// moves, the remainder staying where there are most.
func TestPlanMovesEvensOutPartitions(t *testing.T) {
	for _, tc := range []struct {
		owners []int
		want   []int
		moves  int
	}{
		{[]int{2, 0, 2, 1, 2, 2, 1, 2, 0, 2, 2, 0}, []int{4, 4, 4}, 3}, // 3, 2, 7
		{[]int{0, 1, 2, 0, 1, 2}, []int{2, 2, 2}, 0},
		{[]int{1, 1, 1, 1, 1, 1, 1}, []int{2, 3, 2}, 4},
	} {
		owners := slices.Clone(tc.owners)
		moves := planMoves(owners, 3)
		for _, m := range moves {
			owners[m.partition] = m.to
		}
		if got := spread(owners, 3); !slices.Equal(got, tc.want) || len(moves) != tc.moves {
			t.Errorf("%v: %d moves %v leave %v, want %d moves leaving %v", tc.owners, len(moves), moves, got, tc.moves, tc.want)
		}
	}
}

// The cluster rows state the cluster's rates against one Redis's as a cost,
// and are left out when the phase did not run.
func TestTableShowsTheClusterAsACost(t *testing.T) {
	r := &Results{
		ClusterMasters: 3, ClusterPartitions: 12,
		ClusterSingleJoin:      Search{Best: Step{Achieved: 8000, P99Ms: 30}, Steps: []Step{{Rate: 2000, ServerCPUUs: 250, RedisCPUUs: 100}}},
		ClusterJoin:            Search{Best: Step{Achieved: 6000, P99Ms: 40}, Steps: []Step{{Rate: 2000, ServerCPUUs: 300, RedisCPUUs: 150}}},
		ClusterSingleHeartbeat: Search{Best: Step{Achieved: 10000}}, ClusterHeartbeat: Search{Best: Step{Achieved: 5000}},
	}
	r.compute()
	if r.ClusterJoinRatio != 0.75 || r.ClusterHeartbeatRatio != 0.5 {
		t.Fatalf("ratios join %v heartbeat %v, want 0.75 and 0.5", r.ClusterJoinRatio, r.ClusterHeartbeatRatio)
	}
	var b strings.Builder
	r.Table(&b)
	var joins string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "joins/s, 3-master cluster, 12 partitions") {
			joins = l
		}
	}
	if !strings.Contains(strings.Join(strings.Fields(b.String()), " "), "CPU per join at 2000/s, cluster: Redis, ingest 150 us, 300 us one Redis 100 us, ingest 250 us 1.50x") {
		t.Errorf("no join CPU line at the common rate:\n%s", b.String())
	}
	if !strings.Contains(joins, "6000 /s") || !strings.Contains(joins, "one Redis, 1 partition 8000") ||
		!strings.Contains(joins, "0.75x") || !strings.Contains(joins, "(cost, no target)") {
		t.Errorf("cluster join line: %q", joins)
	}

	var empty strings.Builder
	(&Results{}).Table(&empty)
	if strings.Contains(empty.String(), "cluster") {
		t.Errorf("a run without the cluster phase shows cluster rows:\n%s", empty.String())
	}
}

// findRate steps up from searchStart until a failure, down when the first
// step fails, and bisects twice between the last pass and the first failure.
func TestFindRate(t *testing.T) {
	for _, tc := range []struct {
		limit float64 // rates up to it pass
		want  []float64
	}{
		{limit: 6000, want: []float64{2000, 3200, 5120, 8192, 6656, 5888}},
		{limit: 1000, want: []float64{2000, 1250, 781.25, 1015.625, 898.4375}},
		{limit: 100, want: []float64{2000, 1250, 781.25, 488.28125}},
		{limit: 1e9, want: []float64{2000, 3200, 5120, 8192, 13107.2, 20971.52, 33554.432, 53687.0912, 85899.34592, 137438.953472}},
	} {
		var got []float64
		err := findRate(func(rate float64) (bool, error) {
			got = append(got, rate)
			return rate <= tc.limit, nil
		})
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
		if err != nil || !slices.EqualFunc(got, tc.want, near) {
			t.Errorf("limit %v: tried %v (%v), want %v", tc.limit, got, err, tc.want)
		}
	}
}

// A -skip name that is no phase is refused before anything starts, rather
// than silently running the phase it misspells.
func TestSkipRefusesUnknownPhases(t *testing.T) {
	err := run(context.Background(), []string{"-skip", "http,clusters"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-skip clusters: no such phase") {
		t.Fatalf("run -skip http,clusters = %v", err)
	}
}

func TestRedisArgs(t *testing.T) {
	got := redisArgs(map[string]string{"zset-max-listpack-entries": "128", "hash-max-listpack-entries": "512", "list-max-listpack-size": "-2"})
	want := []string{"--hash-max-listpack-entries", "512", "--list-max-listpack-size", "-2", "--zset-max-listpack-entries", "128"}
	if !slices.Equal(got, want) {
		t.Errorf("redisArgs = %v, want %v", got, want)
	}
}

// TestCostRatio: the CPU-cost ratio is of the medians, robust to one
// outlying repetition.
func TestCostRatio(t *testing.T) {
	ingest, redis, bare := []float64{100, 90, 400, 110, 95}, []float64{50, 60, 55, 45, 500}, []float64{50, 40, 60, 55, 45}
	if got := costRatio(ingest, redis, bare); got != 3.1 { // (100 + 55) / 50
		t.Fatalf("ratio %v, want 3.1", got)
	}
	if got := costRatio(ingest, redis, nil); got != 0 {
		t.Fatalf("ratio without a baseline %v, want 0", got)
	}
	if got := medianRange([]float64{3, 1, 2, 10}); got != "2.5 (1.0–10.0)" {
		t.Fatalf("medianRange %q", got)
	}
}

// TestProjectionLag: the age of the oldest entry not yet projected, from
// the group's pending entries or its last delivered one; 0 when caught up.
func TestProjectionLag(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	ctx := context.Background()
	keys := events.NewKeys(prefix)
	add := func(ms int64) {
		t.Helper()
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream(), ID: fmt.Sprintf("%d-0", ms), Values: []any{"k", "v"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	add(1000)
	if err := rdb.XGroupCreate(ctx, keys.Stream(), projector.DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	add(3000)
	add(4500)
	lag := func(want time.Duration) {
		t.Helper()
		got, err := projectionLag(ctx, rdb, keys)
		if err != nil || got != want {
			t.Fatalf("lag %s (%v), want %s", got, err, want)
		}
	}
	lag(3500 * time.Millisecond) // nothing delivered: from the first entry
	read := func(n int64) []redis.XMessage {
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: projector.DefaultGroup, Consumer: "c",
			Streams: []string{keys.Stream(), ">"}, Count: n}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Messages
	}
	msgs := read(2)
	lag(3500 * time.Millisecond) // 1000 pending
	rdb.XAck(ctx, keys.Stream(), projector.DefaultGroup, msgs[0].ID)
	lag(1500 * time.Millisecond) // 3000 pending
	rdb.XAck(ctx, keys.Stream(), projector.DefaultGroup, msgs[1].ID)
	lag(1500 * time.Millisecond) // 4500 not delivered; last delivered 3000
	msgs = read(1)
	rdb.XAck(ctx, keys.Stream(), projector.DefaultGroup, msgs[0].ID)
	lag(0)
}

// The heartbeat figure is the median ratio of the alternating searches, the
// pair that gave it shown as the rates, and the row fails when any ratio is
// below 0.5.
func TestHeartbeatSearchesMedianRatio(t *testing.T) {
	s := func(rps float64) Search { return Search{Best: Step{Achieved: rps}} }
	r := &Results{
		HeartbeatRuns:        []Search{s(6000), s(4000), s(9000)},
		HeartbeatCeilingRuns: []Search{s(10000), s(10000), s(10000)},
	}
	r.compute()
	if r.HeartbeatRatio != 0.6 || r.HeartbeatRPS != 6000 || r.HeartbeatCeilingRPS != 10000 {
		t.Fatalf("ratio %v at %v/%v, want 0.6 at 6000/10000 (ratios %v)", r.HeartbeatRatio, r.HeartbeatRPS, r.HeartbeatCeilingRPS, r.HeartbeatRatios)
	}
	var b strings.Builder
	r.Table(&b)
	if line := lineWith(b.String(), "median of 3 searches"); !strings.HasSuffix(strings.TrimSpace(line), "NO") {
		t.Fatalf("a run at 0.4x must fail the row: %q", line)
	}
	r.HeartbeatRuns[1] = s(5500)
	r.compute()
	b.Reset()
	r.Table(&b)
	if line := lineWith(b.String(), "median of 3 searches"); !strings.HasSuffix(strings.TrimSpace(line), "yes") || r.HeartbeatRatio != 0.6 {
		t.Fatalf("ratios %v: %q", r.HeartbeatRatios, line)
	}
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
