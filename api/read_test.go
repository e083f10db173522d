package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

// newReadHarness is a harness with the read API on, over a fresh migrated
// schema.
func newReadHarness(t *testing.T, mutate ...func(*api.Config)) (*harness, *store.DB) {
	t.Helper()
	db := newReadDB(t)
	h := newHarness(t, append([]func(*api.Config){func(c *api.Config) { c.ReadDB = db }}, mutate...)...)
	return h, db
}

// newReadDB opens a fresh migrated schema, closed at the end of tb.
func newReadDB(tb testing.TB) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), testutil.Schema(tb), store.Options{Migrate: true, MaxConns: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return db
}

// newReadServer is a server with the read API on, over a fresh schema and
// key prefix, for tests (fuzz targets) that call its handler directly.
func newReadServer(tb testing.TB) http.Handler {
	tb.Helper()
	rdb, prefix := testutil.Redis(tb)
	return api.NewServer(api.Config{Stream: events.NewStream(rdb, prefix, 120*time.Second), ReadDB: newReadDB(tb),
		RedisTimeout: 2 * time.Second})
}

func exec(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// session inserts a viewer_sessions row; left nil leaves it open, joined nil
// makes it transient (its join not projected yet).
func session(t *testing.T, db *store.DB, id, user, stage string, joined, left *time.Time) {
	t.Helper()
	lastSeen := time.Now()
	if left != nil {
		lastSeen = *left
	} else if joined != nil {
		lastSeen = *joined
	}
	exec(t, db, `INSERT INTO viewer_sessions (session_id, user_id, stage_arn, joined_at, last_seen_at, left_at, end_reason, ip_address, country_code)
		VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6::timestamptz IS NULL THEN NULL ELSE 'leave' END, '81.2.69.160', 'GB')`,
		id, user, stage, joined, lastSeen, left)
}

func snapshot(t *testing.T, db *store.DB, stage string, at time.Time, count, peak int) {
	t.Helper()
	exec(t, db, `INSERT INTO viewer_stats_snapshots (stage_arn, snapshot_time, viewer_count, peak_viewers) VALUES ($1, $2, $3, $4)`,
		stage, at, count, peak)
}

func ptr(t time.Time) *time.Time { return &t }

// sid is a fixed session id (a ULID) numbered n, for rows tests insert.
func sid(n int) string { return fmt.Sprintf("01K0000000000000000000%04d", n) }

// cursor is the opaque form of a history cursor's plain text.
func cursor(plain string) string { return base64.RawURLEncoding.EncodeToString([]byte(plain)) }

func stagePath(arn, rest string) string { return "/v1/stages/" + url.PathEscape(arn) + rest }

func (h *harness) get(path string) answer {
	h.t.Helper()
	return h.do(http.MethodGet, path, "", "")
}

func (h *harness) put(path, body string) answer {
	h.t.Helper()
	return h.do(http.MethodPut, path, "application/json", body)
}

const otherStage = "arn:aws:ivs:eu-west-1:123456789012:stage/Other"

func TestStageStats(t *testing.T) {
	h, db := newReadHarness(t)
	now := h.clock.Now()
	ago := func(d time.Duration) *time.Time { return ptr(now.Add(-d)) }
	// In the 7-day window: 60 s and 120 s closed, 30 s open (counted up to
	// now); alice twice, bob once.
	session(t, db, "s1", "alice", stage, ago(2*time.Hour), ago(2*time.Hour-60*time.Second))
	session(t, db, "s2", "bob", stage, ago(time.Hour), ago(time.Hour-120*time.Second))
	session(t, db, "s3", "alice", stage, ago(30*time.Second), nil)
	// Left out: joined 8 days ago, transient (no join yet), another stage.
	session(t, db, "s4", "carol", stage, ago(8*24*time.Hour), ago(8*24*time.Hour-1000*time.Second))
	session(t, db, "s5", "dave", stage, nil, ago(time.Minute))
	session(t, db, "s6", "erin", otherStage, ago(time.Hour), nil)
	// Peak 5 twice: the earlier row wins. The 9 is outside the window.
	snapshot(t, db, stage, now.Add(-3*time.Hour), 3, 5)
	snapshot(t, db, stage, now.Add(-2*time.Hour), 4, 4)
	snapshot(t, db, stage, now.Add(-time.Hour), 5, 5)
	snapshot(t, db, stage, now.Add(-9*24*time.Hour), 9, 9)
	snapshot(t, db, otherStage, now.Add(-time.Hour), 50, 50)

	a := h.get(stagePath(stage, "/stats"))
	if a.status != 200 {
		t.Fatalf("stats = %d %v", a.status, a.body)
	}
	want := map[string]float64{"days": 7, "total_views": 3, "unique_viewers": 2, "avg_watch_seconds": 70,
		"max_watch_seconds": 120, "total_watch_seconds": 210, "peak_viewers": 5}
	for k, v := range want {
		if a.body[k] != v {
			t.Errorf("%s = %v, want %v", k, a.body[k], v)
		}
	}
	if at, _ := time.Parse(time.RFC3339Nano, a.body["peak_at"].(string)); !at.Equal(now.Add(-3 * time.Hour)) {
		t.Errorf("peak_at = %v, want %v", a.body["peak_at"], now.Add(-3*time.Hour).UTC())
	}

	// Ten seconds later the open session has ten more seconds.
	h.clock.Add(10 * time.Second)
	if a := h.get(stagePath(stage, "/stats")); a.body["total_watch_seconds"] != 220.0 || a.body["max_watch_seconds"] != 120.0 {
		t.Errorf("stats 10 s later = %v", a.body)
	}
	// Thirty days take in carol's session and the older peak.
	if a := h.get(stagePath(stage, "/stats?days=30")); a.body["total_views"] != 4.0 || a.body["unique_viewers"] != 3.0 || a.body["peak_viewers"] != 9.0 {
		t.Errorf("30 days = %v", a.body)
	}
	// An unknown stage has zero figures and no peak.
	a = h.get(stagePath("arn:aws:ivs:eu-west-1:123456789012:stage/Nobody", "/stats"))
	if a.status != 200 || a.body["total_views"] != 0.0 || a.body["avg_watch_seconds"] != 0.0 || a.body["peak_viewers"] != 0.0 || a.body["peak_at"] != nil {
		t.Errorf("unknown stage = %d %v", a.status, a.body)
	}
}

func TestSnapshotSeries(t *testing.T) {
	h, db := newReadHarness(t)
	now := h.clock.Now()
	snapshot(t, db, stage, now.Add(-time.Hour), 2, 3)
	snapshot(t, db, stage, now.Add(-2*time.Hour), 1, 1)
	snapshot(t, db, stage, now.Add(-25*time.Hour), 7, 7)
	a := h.get(stagePath(stage, "/snapshots"))
	points, _ := a.body["points"].([]any)
	if a.status != 200 || len(points) != 2 || points[0].(map[string]any)["viewer_count"] != 1.0 || points[1].(map[string]any)["peak_viewers"] != 3.0 {
		t.Fatalf("last 24 h = %d %v", a.status, a.body)
	}
	from := url.QueryEscape(now.Add(-26 * time.Hour).Format(time.RFC3339))
	to := url.QueryEscape(now.Add(-90 * time.Minute).Format(time.RFC3339Nano))
	a = h.get(stagePath(stage, "/snapshots?from="+from+"&to="+to))
	if points, _ := a.body["points"].([]any); a.status != 200 || len(points) != 2 || points[0].(map[string]any)["viewer_count"] != 7.0 {
		t.Fatalf("explicit window = %d %v", a.status, a.body)
	}
	if a := h.get(stagePath(otherStage, "/snapshots")); a.status != 200 || len(a.body["points"].([]any)) != 0 {
		t.Fatalf("no rows = %d %v", a.status, a.body)
	}
}

func TestUserHistoryPages(t *testing.T) {
	h, db := newReadHarness(t)
	now := h.clock.Now()
	// Session ids are ULIDs, as join makes them. sid(1) is the newest
	// (open); sid(3) and sid(4) share joined_at, so session_id breaks the tie
	// (sid(4) first).
	session(t, db, sid(1), "ursula", stage, ptr(now.Add(-time.Minute)), nil)
	session(t, db, sid(2), "ursula", otherStage, ptr(now.Add(-2*time.Hour)), ptr(now.Add(-time.Hour)))
	session(t, db, sid(3), "ursula", stage, ptr(now.Add(-3*time.Hour)), ptr(now.Add(-3*time.Hour+5*time.Second)))
	session(t, db, sid(4), "ursula", stage, ptr(now.Add(-3*time.Hour)), ptr(now.Add(-3*time.Hour+6*time.Second)))
	session(t, db, sid(5), "ursula", stage, ptr(now.Add(-4*time.Hour)), ptr(now.Add(-4*time.Hour+7*time.Second)))
	session(t, db, sid(6), "ursula", stage, nil, ptr(now)) // transient: left out
	session(t, db, sid(7), "victor", stage, ptr(now), nil)

	var got []string
	cursor, pages := "", 0
	for {
		path := "/v1/users/ursula/history?limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		a := h.get(path)
		if a.status != 200 {
			t.Fatalf("%s = %d %v", path, a.status, a.body)
		}
		pages++
		for _, s := range a.body["sessions"].([]any) {
			got = append(got, s.(map[string]any)["session_id"].(string))
		}
		if pages == 1 {
			first := a.body["sessions"].([]any)[0].(map[string]any)
			if first["left_at"] != nil || first["watch_duration_seconds"] != 60.0 || first["ip_address"] != "81.2.69.160" {
				t.Errorf("open session = %v", first)
			}
		}
		next, ok := a.body["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	if strings.Join(got, ",") != strings.Join([]string{sid(1), sid(2), sid(4), sid(3), sid(5)}, ",") || pages != 3 {
		t.Fatalf("pages = %d, sessions = %v", pages, got)
	}
	if a := h.get("/v1/users/ursula/history"); len(a.body["sessions"].([]any)) != 5 || a.body["next_cursor"] != nil {
		t.Fatalf("default limit = %v", a.body)
	}
	if a := h.get("/v1/users/ursula/history?limit=100"); a.status != 200 || len(a.body["sessions"].([]any)) != 5 {
		t.Fatalf("limit 100 = %d %v", a.status, a.body)
	}
	if a := h.get("/v1/users/nobody/history?limit=1"); a.status != 200 || len(a.body["sessions"].([]any)) != 0 {
		t.Fatalf("unknown user history = %d %v", a.status, a.body)
	}
}

func TestUsers(t *testing.T) {
	h, db := newReadHarness(t)
	now := h.clock.Now()
	if a := h.get("/v1/users/zoe"); a.status != 404 || a.code() != "user_not_found" {
		t.Fatalf("unknown user = %d %v", a.status, a.body)
	}
	a := h.put("/v1/users/zoe", `{"username":"Zoë","email":"zoe@example.com"}`)
	if a.status != 201 || a.body["username"] != "Zoë" || a.body["email"] != "zoe@example.com" || a.body["sessions"] != 0.0 {
		t.Fatalf("put new user = %d %v", a.status, a.body)
	}
	session(t, db, "z1", "zoe", stage, ptr(now.Add(-time.Hour)), ptr(now.Add(-time.Hour+90*time.Second)))
	session(t, db, "z2", "zoe", stage, ptr(now.Add(-time.Minute)), nil)
	a = h.put("/v1/users/zoe", `{"username":"zoe"}`)
	if a.status != 200 || a.body["email"] != nil || a.body["sessions"] != 2.0 || a.body["total_watch_seconds"] != 150.0 {
		t.Fatalf("put known user = %d %v", a.status, a.body)
	}
	// A user with sessions but no profile row is known; first_seen is the
	// first join.
	session(t, db, "y1", "yann", stage, ptr(now.Add(-2*time.Hour)), ptr(now.Add(-2*time.Hour+10*time.Second)))
	a = h.get("/v1/users/yann")
	if first, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(a.body["first_seen"])); a.status != 200 || a.body["username"] != nil || !first.Equal(now.Add(-2*time.Hour)) {
		t.Fatalf("user from sessions = %d %v", a.status, a.body)
	}
}

func TestReadBadParameters(t *testing.T) {
	h, _ := newReadHarness(t)
	st := url.PathEscape(stage)
	cases := []struct {
		method, path, body string
		code               string
	}{
		{"GET", "/v1/stages/" + st + "/stats?days=0", "", "invalid_days"},
		{"GET", "/v1/stages/" + st + "/stats?days=366", "", "invalid_days"},
		{"GET", "/v1/stages/" + st + "/stats?days=abc", "", "invalid_days"},
		{"GET", "/v1/stages/not-an-arn/stats", "", "invalid_stage_arn"},
		{"GET", "/v1/users/u/history?limit=0", "", "invalid_limit"},
		{"GET", "/v1/users/u/history?limit=101", "", "invalid_limit"},
		{"GET", "/v1/users/u/history?cursor=%21%21", "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=bm90LWEtY3Vyc29y", "", "invalid_cursor"},
		{"GET", "/v1/users/" + strings.Repeat("u", 129), "", "invalid_user_id"},
		// Cursors whose parts PostgreSQL would refuse, or that join never
		// makes: "1:\x00", "1:\xff\xfe", a session part that is no ULID, a
		// time out of range, a non-canonical number.
		{"GET", "/v1/users/u/history?cursor=MToA", "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=MTr__g", "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor("1:s1"), "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor("1:"+sid(1)+"x"), "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor("1:"+strings.ToLower(sid(1))), "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor("1:8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor("9223372036854775807:"+sid(1)), "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor("-9223372036854775808:"+sid(1)), "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor("+1:"+sid(1)), "", "invalid_cursor"},
		{"GET", "/v1/users/u/history?cursor=" + cursor(":"+sid(1)), "", "invalid_cursor"},
		// Path segments that are no text.
		{"GET", "/v1/users/%00/history", "", "invalid_user_id"},
		{"GET", "/v1/users/a%ffb/history", "", "invalid_user_id"},
		{"GET", "/v1/users/%C3%28", "", "invalid_user_id"},
		{"PUT", "/v1/users/a%00", `{}`, "invalid_user_id"},
		{"GET", "/v1/stages/%00/stats", "", "invalid_stage_arn"},
		{"GET", "/v1/stages/" + st + "%ff/snapshots", "", "invalid_stage_arn"},
		{"GET", "/v1/stages/" + st + "/snapshots?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "", "invalid_window"},
		{"GET", "/v1/stages/" + st + "/snapshots?from=2025-01-01T00:00:00Z&to=2025-03-01T00:00:00Z", "", "invalid_window"},
		{"GET", "/v1/stages/" + st + "/snapshots?from=yesterday", "", "invalid_from"},
		{"GET", "/v1/stages/" + st + "/snapshots?to=2025-01-01", "", "invalid_to"},
		// Times whose UTC year the answer could not show.
		{"GET", "/v1/stages/" + st + "/snapshots?to=9999-12-31T23:59:59-23:59", "", "invalid_to"},
		{"GET", "/v1/stages/" + st + "/snapshots?from=0001-01-01T00:00:00%2B23:59&to=0001-01-02T00:00:00Z", "", "invalid_from"},
		{"PUT", "/v1/stages/" + st, `{"max_viewers":0}`, "invalid_max_viewers"},
		{"PUT", "/v1/stages/" + st, `{"max_viewers":25001}`, "invalid_max_viewers"},
		{"PUT", "/v1/stages/" + st, `{"stage_name":"` + strings.Repeat("n", 101) + `"}`, "invalid_stage_name"},
		{"PUT", "/v1/stages/" + st, `{"is_master":"yes"}`, "invalid_json"},
		{"PUT", "/v1/users/u", `{"email":"not an address"}`, "invalid_email"},
		{"PUT", "/v1/users/u", `{"email":"Zoe <zoe@example.com>"}`, "invalid_email"},
		{"PUT", "/v1/users/u", `{"email":"` + strings.Repeat("e", 250) + `@x.io"}`, "invalid_email"},
		{"PUT", "/v1/users/u", `{"username":"` + strings.Repeat("n", 51) + `"}`, "invalid_username"},
	}
	for _, tc := range cases {
		ctype := ""
		if tc.body != "" {
			ctype = "application/json"
		}
		a := h.do(tc.method, tc.path, ctype, tc.body)
		if a.status != 400 || a.code() != tc.code {
			t.Errorf("%s %s %s: got %d %q, want 400 %q (%v)", tc.method, tc.path, tc.body, a.status, a.code(), tc.code, a.body)
		}
	}
	if a := h.get("/v1/stages/" + st + "/stats?days=365"); a.status != 200 {
		t.Errorf("days=365 = %d %v", a.status, a.body)
	}
	if a := h.get("/v1/stages/" + st); a.status != 404 || a.code() != "stage_not_found" {
		t.Errorf("unknown inactive stage = %d %v", a.status, a.body)
	}
	if a := h.do(http.MethodDelete, "/v1/stages/"+st, "", ""); a.status != 404 || a.code() != "stage_not_found" {
		t.Errorf("delete unknown stage = %d %v", a.status, a.body)
	}
	if n, _ := h.stream.Capacities(context.Background()); len(n) != 0 {
		t.Errorf("bad input set a capacity: %v", n)
	}
}

func TestStageConfigAndCapacity(t *testing.T) {
	h, _ := newReadHarness(t)
	path := stagePath(stage, "")
	a := h.put(path, `{"stage_name":"Main","is_master":true,"max_viewers":2}`)
	if a.status != 201 || a.body["configured"] != true || a.body["max_viewers"] != 2.0 || a.body["stage_name"] != "Main" || a.body["is_master"] != true {
		t.Fatalf("put = %d %v", a.status, a.body)
	}
	h.join("alice")
	h.join("bob")
	full := h.post("/v1/viewers/join", map[string]string{"stage_arn": stage, "user_id": "carol"})
	if full.status != 409 || full.code() != "stage_full" {
		t.Fatalf("third viewer = %d %v", full.status, full.body)
	}
	if a := h.join("alice"); a.body["rejoined"] != true {
		t.Fatalf("rejoin of a present viewer = %v", a.body)
	}
	if a := h.get(path); a.status != 200 || a.body["viewers"] != 2.0 || a.body["max_viewers"] != 2.0 || a.body["last_activity"] == nil {
		t.Fatalf("get = %d %v", a.status, a.body)
	}

	// Lifting the limit (replace with no max_viewers) admits carol.
	if a := h.put(path, `{"stage_name":"Main"}`); a.status != 200 || a.body["max_viewers"] != nil || a.body["is_master"] != false {
		t.Fatalf("replace = %d %v", a.status, a.body)
	}
	h.join("carol")

	// The list has the configured idle stage and the active unconfigured one.
	if a := h.put(stagePath(otherStage, ""), `{}`); a.status != 201 {
		t.Fatalf("put other = %d %v", a.status, a.body)
	}
	third := "arn:aws:ivs:eu-west-1:123456789012:stage/Third"
	h.post("/v1/viewers/join", map[string]string{"stage_arn": third, "user_id": "dan"})
	a = h.get("/v1/stages")
	list, _ := a.body["stages"].([]any)
	if a.status != 200 || len(list) != 3 {
		t.Fatalf("list = %d %v", a.status, a.body)
	}
	byARN := map[string]map[string]any{}
	for _, s := range list {
		m := s.(map[string]any)
		byARN[m["stage_arn"].(string)] = m
	}
	if m := byARN[stage]; m["viewers"] != 3.0 || m["configured"] != true || m["stage_name"] != "Main" {
		t.Errorf("configured active stage = %v", m)
	}
	if m := byARN[otherStage]; m["viewers"] != 0.0 || m["configured"] != true || m["last_activity"] != nil {
		t.Errorf("configured idle stage = %v", m)
	}
	if m := byARN[third]; m["viewers"] != 1.0 || m["configured"] != false {
		t.Errorf("active unconfigured stage = %v", m)
	}
	if a := h.get(stagePath(third, "")); a.status != 200 || a.body["configured"] != false || a.body["viewers"] != 1.0 || a.body["max_viewers"] != nil {
		t.Errorf("get active unconfigured = %d %v", a.status, a.body)
	}

	// Delete removes the config and the capacity.
	h.put(path, `{"max_viewers":3}`)
	if a := h.do(http.MethodDelete, path, "", ""); a.status != 204 {
		t.Fatalf("delete = %d %v", a.status, a.body)
	}
	if caps, err := h.stream.Capacities(context.Background()); err != nil || len(caps) != 0 {
		t.Fatalf("capacities after delete = %v %v", caps, err)
	}
	if a := h.get(path); a.status != 200 || a.body["configured"] != false {
		t.Fatalf("get after delete = %d %v", a.status, a.body)
	}
	if a := h.do(http.MethodDelete, path, "", ""); a.status != 404 {
		t.Fatalf("second delete = %d %v", a.status, a.body)
	}
}

func TestSyncCapacities(t *testing.T) {
	h, db := newReadHarness(t)
	exec(t, db, `INSERT INTO stages (stage_arn, max_viewers) VALUES ($1, 1), ($2, NULL)`, stage, otherStage)
	stray := "arn:aws:ivs:eu-west-1:123456789012:stage/Stray"
	ctx := context.Background()
	if err := h.stream.SetCapacity(ctx, stray, 5); err != nil {
		t.Fatal(err)
	}
	if err := h.stream.SetCapacity(ctx, otherStage, 5); err != nil {
		t.Fatal(err)
	}
	if err := api.SyncStages(ctx, db, h.stream); err != nil {
		t.Fatal(err)
	}
	caps, err := h.stream.Capacities(ctx)
	if err != nil || len(caps) != 1 || caps[stage] != 1 {
		t.Fatalf("capacities = %v %v", caps, err)
	}
	h.join("alice")
	if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": stage, "user_id": "bob"}); a.status != 409 {
		t.Fatalf("join over the synced capacity = %d", a.status)
	}
}

func TestAPIKeys(t *testing.T) {
	h, _ := newReadHarness(t, func(c *api.Config) { c.APIKeys = []string{"key-one", "key-two"} })
	sid := h.join("alice").body["session_id"].(string)
	if a := h.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid}); a.status != 200 {
		t.Fatalf("heartbeat without key = %d", a.status)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if a := h.get(p); a.status != 200 {
			t.Errorf("%s without key = %d", p, a.status)
		}
	}
	for _, p := range []string{"/v1/stages", stagePath(stage, ""), stagePath(stage, "/viewers"), stagePath(stage, "/stats"),
		stagePath(stage, "/snapshots"), "/v1/users/alice/history", "/openapi.json"} {
		for _, hdr := range []string{"", "Bearer wrong", "Bearer key-one-longer", "Basic key-one", "key-one"} {
			a := h.do(http.MethodGet, p, "", "", "Authorization", hdr)
			if a.status != 401 || a.code() != "unauthorized" || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s with %q = %d %v", p, hdr, a.status, a.body)
			}
		}
		if a := h.do(http.MethodGet, p, "", "", "Authorization", "Bearer key-two"); a.status != 200 {
			t.Errorf("%s with a key = %d %v", p, a.status, a.body)
		}
	}
	if a := h.do(http.MethodPut, stagePath(stage, ""), "application/json", `{}`); a.status != 401 {
		t.Errorf("put without key = %d", a.status)
	}
	if a := h.do(http.MethodPut, stagePath(stage, ""), "application/json", `{}`, "Authorization", "bearer key-one"); a.status != 201 {
		t.Errorf("put with key = %d %v", a.status, a.body)
	}
}

func TestPostgresDownAnswers503(t *testing.T) {
	down, err := store.Connect(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", testutil.FreePort(t)), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.Close)
	h := newHarness(t, func(c *api.Config) { c.ReadDB = down })
	if a := h.join("alice"); a.status != 200 {
		t.Fatalf("join = %d", a.status)
	}
	if a := h.get(stagePath(stage, "/viewers")); a.status != 200 || a.body["viewers"] != 1.0 {
		t.Fatalf("live viewers = %d %v", a.status, a.body)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/stages", ""},
		{"GET", stagePath(stage, ""), ""},
		{"PUT", stagePath(stage, ""), `{"max_viewers":1}`},
		{"DELETE", stagePath(stage, ""), ""},
		{"GET", stagePath(stage, "/stats"), ""},
		{"GET", stagePath(stage, "/snapshots"), ""},
		{"GET", "/v1/users/alice", ""},
		{"PUT", "/v1/users/alice", `{"username":"a"}`},
		{"GET", "/v1/users/alice/history", ""},
	} {
		ctype := ""
		if tc.body != "" {
			ctype = "application/json"
		}
		a := h.do(tc.method, tc.path, ctype, tc.body)
		if a.status != 503 || a.code() != "dependency_unavailable" {
			t.Errorf("%s %s = %d %v", tc.method, tc.path, a.status, a.body)
		}
	}
	if caps, _ := h.stream.Capacities(context.Background()); len(caps) != 0 {
		t.Fatalf("a failed PUT left a capacity: %v", caps)
	}
	if a := h.post("/v1/viewers/join", map[string]string{"stage_arn": stage, "user_id": "bob"}); a.status != 200 || a.body["viewers"] != 2.0 {
		t.Fatalf("join with PostgreSQL down = %d %v", a.status, a.body)
	}
}
