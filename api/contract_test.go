package api_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// contract is the player-facing HTTP contract and the live reads: each
// check gets a fresh deployment and must hold on every backend.
var contract = []struct {
	name  string
	check func(t *testing.T, h *harness)
}{
	{"join heartbeat leave", joinHeartbeatLeaveFlow},
	{"two tabs and rejoin", twoTabsAndRejoin},
	{"leave with a beacon body", leaveAcceptsBeaconBody},
	{"expiry by injected time", expiryByInjectedTime},
	{"thousand concurrent joins", thousandConcurrentJoins},
	{"bad input changes nothing", badInputChangesNothing},
	{"backpressure", backpressureAnswers503WithRetryAfter},
	{"capacity", capacityRefusesNewViewersOnly},
	{"live reads across partitions", liveReadsAcrossPartitions},
	{"foreign session IDs", foreignSessionIDsAreNotFound},
	{"stage collision", stageCollisionAnswers503},
	{"group seats fill exactly", groupSeatsFillExactly},
	{"group counts a user once", groupCountsAUserOnce},
	{"group move follows a stale placement", groupMoveFollowsStalePlacement},
}

// TestPlayerContract runs the contract on one Redis with one partition and
// on a real 3-master Redis Cluster with 12 partitions (one cluster for the
// whole table, a prefix per check).
func TestPlayerContract(t *testing.T) {
	cluster := testutil.StartRedisCluster(t, 3)
	backends := []struct {
		name  string
		parts int
		redis func(t *testing.T) (redis.UniversalClient, string)
	}{
		{"redis", 1, func(t *testing.T) (redis.UniversalClient, string) { return testutil.Redis(t) }},
		{"cluster-12", 12, func(t *testing.T) (redis.UniversalClient, string) {
			return cluster.Client(t), "vpc-" + testutil.RandomID(6)
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) {
					rdb, prefix := b.redis(t)
					c.check(t, newPartitionedHarness(t, rdb, prefix, b.parts))
				})
			}
		})
	}
}

// stageIn returns a stage of partition p of h's deployment other than stage.
func stageIn(h *harness, p int) string {
	for i := 0; ; i++ {
		s := fmt.Sprintf("arn:aws:ivs:eu-west-1:123456789012:stage/other%d", i)
		if h.stream.KeysOf(s).Partition() == p {
			return s
		}
	}
}

// capacityRefusesNewViewersOnly: at its capacity a stage answers a new
// viewer 409 stage_full, recording nothing, and lets a present one rejoin.
func capacityRefusesNewViewersOnly(t *testing.T, h *harness) {
	if err := h.stream.SetCapacity(context.Background(), stage, 1); err != nil {
		t.Fatal(err)
	}
	first := h.join("olga")
	if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": stage, "user_id": "pete"}); a.status != 409 || a.code() != "stage_full" {
		t.Fatalf("join over the capacity = %d %v", a.status, a.body)
	}
	if again := h.join("olga"); again.body["rejoined"] != true || again.body["session_id"] != first.body["session_id"] {
		t.Fatalf("present viewer at the capacity = %v", again.body)
	}
	if n := h.streamLen(); n != 2 {
		t.Fatalf("stream holds %d events, want the join and the rejoin", n)
	}
}

// liveReadsAcrossPartitions: /v1/stages lists the stages of every
// partition with their counts, by ARN (an empty array when none is
// active), and each stage's viewers are read from its own partition.
func liveReadsAcrossPartitions(t *testing.T, h *harness) {
	if a := h.do(http.MethodGet, "/v1/stages", "", ""); a.status != 200 || fmt.Sprint(a.body) != "map[stages:[]]" {
		t.Fatalf("stages of an empty deployment = %d %v, want an empty array", a.status, a.body)
	}
	want := map[string]int64{}
	covered := map[int]bool{}
	for i := 23; i >= 0; i-- { // the newest activity on the first ARN
		st := fmt.Sprintf("arn:aws:ivs:eu-west-1:123456789012:stage/live%02d", i)
		h.clock.Add(time.Millisecond)
		covered[h.stream.KeysOf(st).Partition()] = true
		for u := range i%3 + 1 {
			if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": st, "user_id": fmt.Sprint("u", u)}); a.status != 200 {
				t.Fatalf("join %s: %d %v", st, a.status, a.body)
			}
		}
		want[st] = int64(i%3 + 1)
	}
	if len(covered) != h.stream.Partitions() {
		t.Fatalf("the stages fall in %d of %d partitions", len(covered), h.stream.Partitions())
	}
	a := h.do(http.MethodGet, "/v1/stages", "", "")
	if a.status != 200 {
		t.Fatalf("stages = %d %v", a.status, a.body)
	}
	got := map[string]int64{}
	var order []string
	for _, s := range a.body["stages"].([]any) {
		m := s.(map[string]any)
		got[m["stage_arn"].(string)] = num(m["viewers"])
		order = append(order, m["stage_arn"].(string))
	}
	if !maps.Equal(got, want) {
		t.Fatalf("/v1/stages = %v, want %v", got, want)
	}
	if !slices.IsSorted(order) {
		t.Fatalf("/v1/stages is not by ARN: %v", order)
	}
	for st, n := range want {
		a := h.do(http.MethodGet, "/v1/stages/"+url.PathEscape(st)+"/viewers", "", "")
		if a.status != 200 || num(a.body["viewers"]) != n || len(a.body["users"].([]any)) != int(n) {
			t.Fatalf("viewers of %s (partition %d) = %d %v, want %d", st, h.stream.KeysOf(st).Partition(), a.status, a.body, n)
		}
	}
}

// foreignSessionIDsAreNotFound: a well-formed session ID whose routing part
// names another partition (one the deployment lacks, or another of its
// own), bucket or stage than the session's finds nothing, even right after
// a step of the real session (the heartbeat cache keys on the whole ID),
// and changes nothing.
func foreignSessionIDsAreNotFound(t *testing.T, h *harness) {
	sid := h.join("quinn").body["session_id"].(string)
	ref, err := events.ParseSessionID(sid)
	if err != nil {
		t.Fatal(err)
	}
	route := func(p int, bucket, stageHash string) string {
		const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
		return sid[:26] + string([]byte{crockford[p>>5], crockford[p&31]}) + bucket + stageHash
	}
	n := h.stream.Partitions()
	forged := map[string]string{
		"partition P":       route(n, ref.Bucket, ref.Stage),
		"partition 1023":    route(events.MaxPartitions-1, ref.Bucket, ref.Stage),
		"another partition": route((ref.Partition+1)%max(n, 2), ref.Bucket, ref.Stage),
		"another bucket":    route(ref.Partition, events.UserBucket("not-quinn"), ref.Stage),
		"another stage":     route(ref.Partition, ref.Bucket, events.StageHash(stage+"x")),
		// the form of the layout before partitions: unknown, not invalid
		"a bare ULID": sid[:26],
	}
	before := h.streamLen()
	for name, f := range forged {
		if f == sid {
			t.Fatalf("%s: the forgery is the session ID itself", name)
		}
		if a := h.post("/v1/viewers/heartbeat", map[string]string{"session_id": f}); a.status != 404 || a.code() != "session_not_found" {
			t.Errorf("heartbeat with %s (%s) = %d %v, want 404 session_not_found", name, f, a.status, a.body)
		}
		if a := h.post("/v1/viewers/leave", map[string]string{"session_id": f}); a.status != 200 || a.body["closed"] != false {
			t.Errorf("leave with %s (%s) = %d %v, want 200 closed=false", name, f, a.status, a.body)
		}
	}
	if after := h.streamLen(); after != before {
		t.Fatalf("forged session IDs appended %d events", after-before)
	}
	h.clock.Add(16 * time.Second) // past the heartbeat cache's half interval
	if a := h.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid}); a.status != 200 || num(a.body["viewers"]) != 1 {
		t.Fatalf("the real session after the forgeries = %d %v", a.status, a.body)
	}
}

// stageCollisionAnswers503: a join refused for a stage-hash collision is a
// 503 stage_collision with Retry-After, and records nothing.
func stageCollisionAnswers503(t *testing.T, h *harness) {
	names := h.stream.KeysOf(stage).StageNames()
	if err := h.rdb.HSet(context.Background(), names, events.StageHash(stage), stage+"-other").Err(); err != nil {
		t.Fatal(err)
	}
	a := h.post("/v1/viewers/join", map[string]string{"stage_arn": stage, "user_id": "rosa"})
	if a.status != 503 || a.code() != "stage_collision" || a.header.Get("Retry-After") != "30" {
		t.Fatalf("join on a collision = %d %v %v", a.status, a.body, a.header)
	}
	if n := h.streamLen(); n != 0 {
		t.Fatalf("a refused join appended %d events", n)
	}
	if n, err := h.stream.Count(context.Background(), stage); err != nil || n != 0 {
		t.Fatalf("count after a refused join = %d, %v", n, err)
	}
}
