package api_test

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/projector"
	"github.com/viewpulse/viewpulse/store"
)

// project runs the real projector over h's stream until every event is in
// db, and fails the test if any was dead-lettered.
func (h *harness) project(db *store.DB) {
	h.t.Helper()
	p := projector.New(h.rdb, h.stream.Keys(), db, projector.Config{Consumer: "test", BatchSize: 100, Block: time.Millisecond,
		Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	if err := p.Init(ctx); err != nil {
		h.t.Fatal(err)
	}
	for {
		n, err := p.Step(ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if dead, err := h.rdb.XLen(ctx, h.stream.Keys().DeadLetter()).Result(); err != nil || dead != 0 {
		h.t.Fatalf("%d events dead-lettered (%v)", dead, err)
	}
}

// TestUserIDsRoundTripFromJoinToHistory joins as users whose ids hold '%',
// '/', '+', spaces and non-ASCII, projects the events into PostgreSQL, and
// reads each user's history by its escaped id: every path segment is
// unescaped exactly once, so each id answers for itself only, and
// `a%41b` is not `aAb`.
func TestUserIDsRoundTripFromJoinToHistory(t *testing.T) {
	h, db := newReadHarness(t)
	users := []string{"50%off", "100%", "a/b", "a+b", "a b", "ünï中", "a%41b", "aAb", "a%2541b", "%", "a%2Fb"}
	sessions := map[string]string{}
	for _, u := range users {
		sessions[u] = h.join(u).body["session_id"].(string)
	}
	h.project(db)

	for _, u := range users {
		path := "/v1/users/" + url.PathEscape(u) + "/history"
		a := h.get(path)
		got, _ := a.body["sessions"].([]any)
		if a.status != 200 || a.body["user_id"] != u || len(got) != 1 || got[0].(map[string]any)["session_id"] != sessions[u] {
			t.Errorf("GET %s (user %q) = %d %v, want the one session %s", path, u, a.status, a.body, sessions[u])
		}
		if a := h.get("/v1/users/" + url.PathEscape(u)); a.status != 200 || a.body["user_id"] != u || a.body["sessions"] != 1.0 {
			t.Errorf("GET user %q = %d %v", u, a.status, a.body)
		}
	}

	// PUT /v1/users/a%2541b is user `a%41b`, and only that user.
	if a := h.put("/v1/users/a%2541b", `{"username":"escaped"}`); a.status != 200 || a.body["user_id"] != "a%41b" || a.body["username"] != "escaped" {
		t.Fatalf("PUT a%%2541b = %d %v", a.status, a.body)
	}
	for _, u := range []string{"aAb", "a%2541b"} {
		if a := h.get("/v1/users/" + url.PathEscape(u)); a.status != 200 || a.body["username"] != nil {
			t.Errorf("user %q after the PUT of a%%41b = %d %v", u, a.status, a.body)
		}
	}
	if a := h.get("/v1/users/a%2541b"); a.body["username"] != "escaped" {
		t.Errorf("user a%%41b after its PUT = %v", a.body)
	}
	// A segment escaped more than needed still means the same id.
	if a := h.get("/v1/users/%61%41%62/history"); a.status != 200 || a.body["user_id"] != "aAb" {
		t.Errorf("GET %%61%%41%%62 = %d %v", a.status, a.body)
	}
}
