package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
)

const groupKey = "group-test-key"

// keyed is a harness on h's deployment that has an API key, as seat
// assignment needs one.
func keyed(t *testing.T, h *harness) *harness {
	t.Helper()
	g := newPartitionedHarness(t, h.rdb, h.stream.Prefix(), h.stream.Partitions(), func(c *api.Config) { c.APIKeys = []string{groupKey} })
	g.stream.Now = h.clock.Now
	g.clock = h.clock
	return g
}

func (h *harness) assign(master, user string) answer {
	h.t.Helper()
	return h.do(http.MethodPost, "/v1/groups/"+url.PathEscape(master)+"/assign", "application/json",
		`{"user_id":"`+user+`"}`, "Authorization", "Bearer "+groupKey)
}

func (h *harness) group(master string) answer {
	h.t.Helper()
	return h.do(http.MethodGet, "/v1/groups/"+url.PathEscape(master), "", "", "Authorization", "Bearer "+groupKey)
}

// makeGroup puts master and children in one group in Redis (what PUT
// /v1/stages does after its checks), each with capacity max.
func makeGroup(t *testing.T, h *harness, master string, children []string, max int) {
	t.Helper()
	ctx := context.Background()
	if err := h.stream.Regroup(ctx, events.GroupChange{Stage: master, To: master, Capacity: max}); err != nil {
		t.Fatal(err)
	}
	for _, c := range children {
		if err := h.stream.Regroup(ctx, events.GroupChange{Stage: c, To: master, Capacity: max}); err != nil {
			t.Fatal(err)
		}
	}
}

func groupStages(n int) (master string, children []string) {
	master = "arn:aws:ivs:eu-west-1:123456789012:stage/gmaster"
	for i := 1; i < n; i++ {
		children = append(children, fmt.Sprintf("arn:aws:ivs:eu-west-1:123456789012:stage/gchild%d", i))
	}
	return master, children
}

// groupSeatsFillExactly: a group of 3 stages of max_viewers 2; 6 concurrent
// assigns fill each stage to exactly 2, the 7th is 409 group_full; an
// assign is sticky; the join consumes the seat and a stranger's join cannot
// take a reserved place; an expired seat frees its place.
func groupSeatsFillExactly(t *testing.T, h *harness) {
	g := keyed(t, h)
	master, children := groupStages(3)
	makeGroup(t, h, master, children, 2)
	var mu sync.Mutex
	seats := map[string]string{} // user -> stage
	p := pool.New()
	for i := range 6 {
		p.Go(func() {
			user := fmt.Sprint("viewer-", i)
			a := g.assign(master, user)
			if a.status != http.StatusOK || a.body["expires_at"] == nil {
				t.Errorf("assign %s: %d %v", user, a.status, a.body)
				return
			}
			mu.Lock()
			seats[user] = a.body["stage_arn"].(string)
			mu.Unlock()
		})
	}
	p.Wait()
	per := map[string]int{}
	for _, st := range seats {
		per[st]++
	}
	for _, st := range append([]string{master}, children...) {
		if per[st] != 2 {
			t.Fatalf("seats per stage %v, want 2 on each of the 3", per)
		}
	}
	if a := g.assign(master, "viewer-6"); a.status != http.StatusConflict || a.code() != "group_full" {
		t.Fatalf("7th assign: %d %v", a.status, a.body)
	}
	if a := g.assign(master, "viewer-0"); a.status != http.StatusOK || a.body["stage_arn"] != seats["viewer-0"] {
		t.Fatalf("re-assign of viewer-0: %d %v, want %s again", a.status, a.body, seats["viewer-0"])
	}
	// The seat holder's join is admitted and consumes the seat; a stranger
	// cannot take the other reserved place.
	st := seats["viewer-0"]
	if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": st, "user_id": "viewer-0"}); a.status != http.StatusOK {
		t.Fatalf("seat holder's join: %d %v", a.status, a.body)
	}
	if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": st, "user_id": "stranger"}); a.status != http.StatusConflict || a.code() != "stage_full" {
		t.Fatalf("stranger's join on a stage whose other place is reserved: %d %v", a.status, a.body)
	}
	a := g.group(master)
	if a.status != http.StatusOK || a.body["viewers"] != float64(1) || a.body["capacity"] != float64(6) {
		t.Fatalf("group: %d %v", a.status, a.body)
	}
	for _, s := range a.body["stages"].([]any) {
		row := s.(map[string]any)
		want := float64(2)
		if row["stage_arn"] == st {
			want = 1 // one seat used by the join
		}
		if row["reserved"] != want {
			t.Fatalf("group stage %v: reserved %v, want %v", row["stage_arn"], row["reserved"], want)
		}
	}
	// Past SEAT_TTL the unused seats are free again: present users keep
	// theirs (viewer-0 is present), the 7th user gets a place.
	h.clock.Add(api.DefaultSeatTTL + time.Second)
	if a := g.assign(master, "viewer-6"); a.status != http.StatusOK {
		t.Fatalf("assign after the seats expired: %d %v", a.status, a.body)
	}
	if a := g.assign(master, "viewer-0"); a.status != http.StatusOK || a.body["stage_arn"] != st || a.body["expires_at"] != nil {
		t.Fatalf("assign of a present user: %d %v, want their stage %s and no seat", a.status, a.body, st)
	}
	// A grouped stage lives in its master's partition.
	for _, c := range children {
		if h.stream.KeysOf(c) != h.stream.KeysOf(master) {
			t.Fatalf("stage %s is in partition %d, its master in %d", c, h.stream.KeysOf(c).Partition(), h.stream.KeysOf(master).Partition())
		}
	}
	if a := g.assign("arn:aws:ivs:eu-west-1:123456789012:stage/nogroup", "x"); a.status != http.StatusNotFound || a.code() != "group_not_found" {
		t.Fatalf("assign in no group: %d %v", a.status, a.body)
	}
}

// groupCountsAUserOnce: a user present on two stages of a group counts once
// in the group's viewers, once on each stage.
func groupCountsAUserOnce(t *testing.T, h *harness) {
	g := keyed(t, h)
	master, children := groupStages(3)
	makeGroup(t, h, master, children, 0)
	for _, st := range []string{master, children[0]} {
		if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": st, "user_id": "both"}); a.status != http.StatusOK {
			t.Fatalf("join %s: %d %v", st, a.status, a.body)
		}
	}
	h.post("/v1/viewers/join", map[string]string{"stage_arn": children[1], "user_id": "other"})
	a := g.group(master)
	if a.status != http.StatusOK || a.body["viewers"] != float64(2) || a.body["capacity"] != nil {
		t.Fatalf("group: %d %v, want 2 distinct viewers and no capacity", a.status, a.body)
	}
	var counts []float64
	for _, s := range a.body["stages"].([]any) {
		counts = append(counts, s.(map[string]any)["viewers"].(float64))
	}
	if !slices.Equal(counts, []float64{1, 1, 1}) {
		t.Fatalf("per-stage counts %v, want 1 each", counts)
	}
}

// groupMoveFollowsStalePlacement: a stage moved into a group placed in
// another partition, by another process, is joined through this one before
// it read the new placement: the old partition sends the join on, and the
// event lands in the master's partition.
func groupMoveFollowsStalePlacement(t *testing.T, h *harness) {
	if h.stream.Partitions() == 1 {
		return // nothing to move between
	}
	other := newPartitionedHarness(t, h.rdb, h.stream.Prefix(), h.stream.Partitions())
	master := "arn:aws:ivs:eu-west-1:123456789012:stage/gmaster"
	child := stageIn(h, (h.stream.KeysOf(master).Partition()+1)%h.stream.Partitions())
	before := h.stream.KeysOf(child)
	makeGroup(t, other, master, []string{child}, 0) // h has not read the placement since
	if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": child, "user_id": "late"}); a.status != http.StatusOK {
		t.Fatalf("join through the stale process: %d %v", a.status, a.body)
	}
	if n := h.rdb.XLen(context.Background(), before.Stream()).Val(); n != 0 {
		t.Fatalf("%d events in the partition the stage left", n)
	}
	if n := h.rdb.XLen(context.Background(), h.stream.KeysOf(master).Stream()).Val(); n != 1 {
		var lens []int64
		for p := range h.stream.Partitions() {
			lens = append(lens, h.rdb.XLen(context.Background(), h.stream.PartitionKeys(p).Stream()).Val())
		}
		t.Fatalf("%d events in the master's partition %d, want the join; streams %v; child was in %d, now %d", n,
			h.stream.KeysOf(master).Partition(), lens, before.Partition(), h.stream.KeysOf(child).Partition())
	}
	// And a stage with viewers cannot leave the group.
	err := other.stream.Regroup(context.Background(), events.GroupChange{Stage: child, From: master})
	if err != events.ErrStageHasViewers {
		t.Fatalf("ungrouping a stage with a viewer: %v", err)
	}
}
