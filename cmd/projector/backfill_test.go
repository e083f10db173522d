package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

// TestBackfillUA: `projector backfill-ua` classifies the user agents of rows
// that have none (as rows from before migration 00003) and exits.
func TestBackfillUA(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t)
	dbURL := testutil.Schema(t)
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL, store.Options{Migrate: true, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	now := time.Now()
	for id, ua := range map[string]string{"01K00000000000000000000001": "curl/8.5.0",
		"01K00000000000000000000002": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1"} {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO viewer_sessions (session_id, user_id, stage_arn, joined_at, last_seen_at, user_agent)
			VALUES ($1, 'u', $2, $3, $3, $4)`, id, stage, now, ua); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "DATABASE_URL": dbURL, "LOG_FORMAT": "json"}
	var out bytes.Buffer
	if err := run(ctx, []string{"backfill-ua", "-page", "1"}, getenv(env), &out); err != nil {
		t.Fatalf("backfill-ua: %v\n%s", err, out.String())
	}
	rows, err := db.SessionsAfter(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][3]string{}
	for _, r := range rows {
		got[r.SessionID] = [3]string{r.DeviceType, r.OS, r.Browser}
	}
	if got["01K00000000000000000000001"] != [3]string{"bot", "", ""} || got["01K00000000000000000000002"] != [3]string{"mobile", "iOS", "Safari"} {
		t.Errorf("after backfill-ua: %v\n%s", got, out.String())
	}
}
