package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/viewpulse/viewpulse/api"
)

func (h *harness) putStage(arn, body string) answer {
	h.t.Helper()
	return h.do(http.MethodPut, "/v1/stages/"+url.PathEscape(arn), "application/json", body, "Authorization", "Bearer "+groupKey)
}

func (h *harness) deleteStage(arn string) answer {
	h.t.Helper()
	return h.do(http.MethodDelete, "/v1/stages/"+url.PathEscape(arn), "", "", "Authorization", "Bearer "+groupKey)
}

// TestGroupConfiguration: PUT /v1/stages builds groups under the rules
// (master configured, is_master, no chains, not itself), refuses to move a
// stage with viewers in or out of a group, and a master that stages name
// can neither stop being one nor be deleted; what it accepts is what
// GET /v1/groups and the seat assignment see.
func TestGroupConfiguration(t *testing.T) {
	h, db := newReadHarness(t, func(c *api.Config) { c.APIKeys = []string{groupKey} })
	master, children := groupStages(4)
	a, b, c := children[0], children[1], children[2]
	js := func(format string, args ...any) string { return fmt.Sprintf(format, args...) }
	for _, tc := range []struct {
		name, stage, body string
		status            int
		code              string
	}{
		{"master not configured", a, js(`{"master_stage_arn":%q}`, master), 409, "invalid_group"},
		{"master", master, `{"is_master":true,"max_viewers":2}`, 201, ""},
		{"child", a, js(`{"master_stage_arn":%q,"max_viewers":2}`, master), 201, ""},
		{"own master", b, js(`{"master_stage_arn":%q}`, b), 409, "invalid_group"},
		{"master of a child: a chain", b, js(`{"master_stage_arn":%q}`, a), 409, "invalid_group"},
		{"a master with a master", b, js(`{"is_master":true,"master_stage_arn":%q}`, master), 409, "invalid_group"},
		{"master stops being one while named", master, `{"is_master":false}`, 409, "invalid_group"},
		{"master gets a master while named", master, js(`{"is_master":true,"master_stage_arn":%q}`, b), 409, "invalid_group"},
		{"not an ARN", b, `{"master_stage_arn":"stage-1"}`, 400, "invalid_master_stage_arn"},
		{"second child", b, js(`{"master_stage_arn":%q,"max_viewers":2}`, master), 201, ""},
	} {
		if got := h.putStage(tc.stage, tc.body); got.status != tc.status || got.code() != tc.code {
			t.Fatalf("%s: %d %v, want %d %q", tc.name, got.status, got.body, tc.status, tc.code)
		}
	}
	if g := h.group(master); g.status != 200 || g.body["capacity"] != float64(6) || len(g.body["stages"].([]any)) != 3 {
		t.Fatalf("group: %d %v", g.status, g.body)
	}
	if got := h.deleteStage(master); got.status != 409 || got.code() != "invalid_group" {
		t.Fatalf("delete of a named master: %d %v", got.status, got.body)
	}
	// c has a viewer: it can join no group until it is empty.
	j := h.post("/v1/viewers/join", map[string]string{"stage_arn": c, "user_id": "watcher"})
	if j.status != 200 {
		t.Fatalf("join: %d %v", j.status, j.body)
	}
	if got := h.putStage(c, js(`{"master_stage_arn":%q}`, master)); got.status != 409 || got.code() != "stage_has_viewers" {
		t.Fatalf("moving a watched stage into a group: %d %v", got.status, got.body)
	}
	if g := h.group(master); len(g.body["stages"].([]any)) != 3 {
		t.Fatalf("the refused move changed the group: %v", g.body)
	}
	h.post("/v1/viewers/leave", map[string]string{"session_id": j.body["session_id"].(string)})
	if got := h.putStage(c, js(`{"master_stage_arn":%q,"max_viewers":2}`, master)); got.status != 201 && got.status != 200 {
		t.Fatalf("moving the emptied stage into the group: %d %v", got.status, got.body)
	}
	if g := h.group(master); g.body["capacity"] != float64(8) || len(g.body["stages"].([]any)) != 4 {
		t.Fatalf("group after the move: %v", g.body)
	}
	// Leaving the group (and deleting the configuration) shrinks it.
	if got := h.putStage(b, `{"max_viewers":2}`); got.status != 200 {
		t.Fatalf("b leaves the group: %d %v", got.status, got.body)
	}
	if got := h.deleteStage(a); got.status != 204 {
		t.Fatalf("delete a child: %d %v", got.status, got.body)
	}
	if g := h.group(master); g.body["capacity"] != float64(4) || len(g.body["stages"].([]any)) != 2 {
		t.Fatalf("group after b left and a was deleted: %v", g.body)
	}
	if got := h.do(http.MethodGet, "/v1/stages/"+url.PathEscape(c), "", "", "Authorization", "Bearer "+groupKey); got.body["master_stage_arn"] != master {
		t.Fatalf("GET of a grouped stage: %v", got.body)
	}
	// Ingest's start-up sync rebuilds the groups from the configuration.
	if err := h.rdb.Del(context.Background(), h.stream.KeysOf(master).Group(master)).Err(); err != nil {
		t.Fatal(err)
	}
	if g := h.group(master); g.status != 404 {
		t.Fatalf("group with its Redis set gone: %d", g.status)
	}
	if err := api.SyncStages(context.Background(), db, h.stream); err != nil {
		t.Fatal(err)
	}
	if g := h.group(master); g.status != 200 || len(g.body["stages"].([]any)) != 2 {
		t.Fatalf("group after the sync: %d %v", g.status, g.body)
	}
}

// TestTokenForAGroup: POST /v1/tokens with group assigns the user a seat
// and mints the token for that stage.
func TestTokenForAGroup(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, withTokens(api.TokenConfig{SigningKey: key}), func(c *api.Config) { c.APIKeys = []string{groupKey} })
	master, children := groupStages(2)
	makeGroup(t, h, master, children, 1)
	auth := []string{"Authorization", "Bearer " + groupKey}
	seen := map[string]bool{}
	for _, user := range []string{"first", "second"} {
		a := h.mint(map[string]any{"user_id": user, "group": master}, auth...)
		if a.status != 200 {
			t.Fatalf("mint for %s: %d %v", user, a.status, a.body)
		}
		seen[a.body["stage_arn"].(string)] = true
	}
	if !seen[master] || !seen[children[0]] {
		t.Fatalf("the two tokens went to %v, want one per stage", seen)
	}
	if a := h.mint(map[string]any{"user_id": "third", "group": master}, auth...); a.status != 409 || a.code() != "group_full" {
		t.Fatalf("mint in a full group: %d %v", a.status, a.body)
	}
	if a := h.mint(map[string]any{"user_id": "x", "group": master, "stage_arn": master}, auth...); a.status != 400 || a.code() != "invalid_group" {
		t.Fatalf("mint with group and stage_arn: %d %v", a.status, a.body)
	}
}

// TestAssignStorm: 5,000 users at once onto a group of 3 stages of 2,000,
// each joining the stage it is assigned: every stage ends at or under its
// capacity, every user has a place, nobody was refused. The rate is logged
// (a figure, not a target).
func TestAssignStorm(t *testing.T) {
	h := newHarness(t, func(c *api.Config) { c.APIKeys = []string{groupKey} })
	master, children := groupStages(3)
	makeGroup(t, h, master, children, 2000)
	const users = 5000
	var refused atomic.Int64
	start := time.Now()
	p := pool.New().WithMaxGoroutines(32)
	for i := range users {
		p.Go(func() {
			user := fmt.Sprint("storm-", i)
			a := h.assign(master, user)
			if a.status != 200 {
				refused.Add(1)
				return
			}
			if j := h.post("/v1/viewers/join", map[string]string{"stage_arn": a.body["stage_arn"].(string), "user_id": user}); j.status != 200 {
				refused.Add(1)
			}
		})
	}
	p.Wait()
	elapsed := time.Since(start)
	if n := refused.Load(); n != 0 {
		t.Fatalf("%d of %d assigns or joins refused", n, users)
	}
	g := h.group(master)
	if g.body["viewers"] != float64(users) {
		t.Fatalf("group holds %v viewers, want %d", g.body["viewers"], users)
	}
	for _, s := range g.body["stages"].([]any) {
		row := s.(map[string]any)
		if row["viewers"].(float64) > 2000 || row["reserved"].(float64) != 0 {
			t.Fatalf("stage %v: %v viewers, %v reserved", row["stage_arn"], row["viewers"], row["reserved"])
		}
	}
	t.Logf("%d assigns + joins over HTTP in %s: %.0f assign+join pairs/s; stages %v", users, elapsed.Round(time.Millisecond),
		float64(users)/elapsed.Seconds(), g.body["stages"])
}
