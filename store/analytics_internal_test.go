package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// openTestDB opens a fresh migrated schema, closed at the end of tb.
func openTestDB(tb testing.TB) *DB {
	tb.Helper()
	db, err := Open(context.Background(), testutil.Schema(tb), Options{Migrate: true, MaxConns: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return db
}

// TestSeriesPlanOnAYearOfSnapshots loads a year of 5-minute snapshot rows
// (105,120) for one stage, and as many for two other stages, and checks
// that the year's series is read from the covering index alone. The
// EXPLAIN (ANALYZE, BUFFERS) timings are logged, not asserted.
func TestSeriesPlanOnAYearOfSnapshots(t *testing.T) {
	db := openTestDB(t)
	ctx := context.Background()
	const target = "arn:aws:ivs:eu-west-1:123456789012:stage/Year"
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	start := end.Add(-365 * 24 * time.Hour)
	for _, st := range []string{target, target + "Other1", target + "Other2"} {
		if _, err := db.Pool.Exec(ctx, `
INSERT INTO viewer_stats_snapshots (stage_arn, snapshot_time, viewer_count, peak_viewers)
SELECT $1, t, (extract(epoch FROM t)::bigint / 300) % 1000, (extract(epoch FROM t)::bigint / 300) % 1000 + 5
  FROM generate_series($2::timestamptz, $3::timestamptz - interval '5 minutes', interval '5 minutes') AS t`, st, start, end); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM viewer_stats_snapshots WHERE stage_arn = $1`, target).Scan(&n); err != nil || n != 105120 {
		t.Fatalf("%d rows of the stage (%v), want 105120", n, err)
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM (ANALYZE) viewer_stats_snapshots`); err != nil {
		t.Fatal(err)
	}
	for _, step := range []time.Duration{24 * time.Hour, time.Hour} {
		for run := 0; run < 2; run++ { // the second run reads a warm cache
			rows, err := db.Pool.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+seriesSQL, target, start, end, int64(step/time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if !strings.Contains(text, "Index Only Scan using viewer_stats_snapshots_stage_time_idx") {
				t.Errorf("step %v: not an index-only scan of the covering index:\n%s", step, text)
			}
			t.Logf("step %v, run %d:\n%s", step, run+1, text)
		}
		points, err := db.Series(ctx, target, start, end, step)
		if err != nil {
			t.Fatal(err)
		}
		if want := int(end.Sub(start) / step); len(points) != want {
			t.Errorf("step %v: %d points, want %d", step, len(points), want)
		}
	}
}

// TestBackfillDevicesClassifiesOldRows: rows without a device type (from
// before migration 00003) get one; rows with one, and rows whose join is not
// projected yet, are left alone; a second run finds nothing.
func TestBackfillDevicesClassifiesOldRows(t *testing.T) {
	db := openTestDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for _, r := range []struct {
		id, ua, device string
		joined         bool
	}{{"01K00000000000000000000001", "bot/1", "", true}, {"01K00000000000000000000002", "", "", true},
		{"01K00000000000000000000003", "viewer/1", "", true}, {"01K00000000000000000000004", "bot/1", "tablet", true},
		{"01K00000000000000000000005", "bot/1", "", false}} {
		var joined any
		if r.joined {
			joined = now
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO viewer_sessions (session_id, user_id, stage_arn, joined_at, last_seen_at, user_agent, device_type)
			VALUES ($1, 'u', 's', $2, $3, NULLIF($4, ''), NULLIF($5, ''))`, r.id, joined, now, r.ua, r.device); err != nil {
			t.Fatal(err)
		}
	}
	classify := func(ua string) (string, string, string) {
		switch ua {
		case "bot/1":
			return "bot", "", ""
		case "viewer/1":
			return "desktop", "Linux", "Firefox"
		}
		return "other", "", ""
	}
	n, err := db.BackfillDevices(ctx, classify, 2) // pages of 2: three pages
	if err != nil || n != 3 {
		t.Fatalf("backfill = %d, %v; want 3", n, err)
	}
	rows, err := db.SessionsAfter(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]string{"01K00000000000000000000001": {"bot", "", ""}, "01K00000000000000000000002": {"other", "", ""},
		"01K00000000000000000000003": {"desktop", "Linux", "Firefox"}, "01K00000000000000000000004": {"tablet", "", ""},
		"01K00000000000000000000005": {"", "", ""}}
	for _, r := range rows {
		if got := [3]string{r.DeviceType, r.OS, r.Browser}; got != want[r.SessionID] {
			t.Errorf("%s = %v, want %v", r.SessionID, got, want[r.SessionID])
		}
	}
	if n, err := db.BackfillDevices(ctx, classify, 2); err != nil || n != 0 {
		t.Errorf("second backfill = %d, %v; want 0", n, err)
	}
}
