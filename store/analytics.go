package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// BreakdownRow is one key's share of a stage's sessions over a window.
type BreakdownRow struct {
	Key           string `json:"key"`
	Views         int64  `json:"views"`
	UniqueViewers int64  `json:"unique_viewers"`
	// WatchSeconds counts open sessions up to now, as the stats do.
	WatchSeconds int64 `json:"watch_seconds"`
}

// Breakdown dimensions: the column each groups by. A session without a
// value (no user agent, unknown country, not yet classified) is "unknown".
var breakdownColumns = map[string]string{
	"country": "country_code",
	"device":  "device_type",
	"os":      "os",
	"browser": "browser",
}

// BreakdownTop is how many keys a breakdown names; the rest are summed
// into one row keyed "other".
const BreakdownTop = 50

// ValidBreakdown reports whether by is a breakdown dimension.
func ValidBreakdown(by string) bool { _, ok := breakdownColumns[by]; return ok }

// breakdownSQL is the breakdown over column col (from breakdownColumns,
// never from a request). $1 stage, $2 now, $3 days, $4 include bots, $5 top.
// The sessions are those StageStats counts, so views and watch_seconds sum
// to its total_views and total_watch_seconds; unique_viewers do not sum
// (a user can be under several keys).
func breakdownSQL(col string) string {
	return `
WITH s AS (
    SELECT coalesce(` + col + `, 'unknown') AS key, user_id, ` + watchedSeconds + ` AS watched
      FROM viewer_sessions
     WHERE stage_arn = $1
       AND joined_at > $2::timestamptz - make_interval(days => $3::int) AND joined_at <= $2::timestamptz
       AND ` + notBot + `
), g AS (
    SELECT key, count(*) AS views, count(DISTINCT user_id) AS uniq, sum(watched) AS watched,
           row_number() OVER (ORDER BY count(*) DESC, key) AS rank
      FROM s GROUP BY key
)
SELECT key, views, uniq, watched::bigint, rank FROM g WHERE rank <= $5
UNION ALL
SELECT 'other', count(*), count(DISTINCT user_id), coalesce(sum(watched), 0)::bigint, $5 + 1
  FROM s WHERE key IN (SELECT key FROM g WHERE rank > $5)
HAVING count(*) > 0
ORDER BY 5`
}

// Breakdown returns stage's sessions of the days ending at now grouped by
// dimension by (ValidBreakdown), most views first (ties by key), the top
// BreakdownTop keys and then "other" for the rest, if any. Bots count only
// with includeBots.
func (db *DB) Breakdown(ctx context.Context, stage, by string, days int, now time.Time, includeBots bool) ([]BreakdownRow, error) {
	col, ok := breakdownColumns[by]
	if !ok {
		return nil, fmt.Errorf("breakdown: unknown dimension %q", by)
	}
	rows, err := db.Pool.Query(ctx, breakdownSQL(col), stage, now, days, includeBots, BreakdownTop)
	if err != nil {
		return nil, fmt.Errorf("breakdown: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (BreakdownRow, error) {
		var b BreakdownRow
		var rank int64
		return b, r.Scan(&b.Key, &b.Views, &b.UniqueViewers, &b.WatchSeconds, &rank)
	})
	if err != nil {
		return nil, fmt.Errorf("breakdown: %w", err)
	}
	return out, nil
}

// SeriesPoint is one bucket of a stage's count series.
type SeriesPoint struct {
	// Time is the bucket's start, aligned to multiples of the step since
	// 1970-01-01T00:00:00Z.
	Time time.Time `json:"time"`
	// AvgViewers is the mean viewer_count of the bucket's snapshot rows,
	// PeakViewers their highest peak_viewers.
	AvgViewers  float64 `json:"avg_viewers"`
	PeakViewers int64   `json:"peak_viewers"`
}

// seriesSQL walks the buckets of [from, to) and aggregates each one's rows
// with a range scan of the covering unique index (stage_arn, snapshot_time)
// INCLUDE (viewer_count, peak_viewers), an index-only scan: no sort or hash
// of the year's rows, whatever the step (at most 10,000 buckets). Buckets
// without a row are dropped. $1 stage, $2 from, $3 to, $4 step in seconds.
const seriesSQL = `
SELECT b.t, round(a.avg_viewers, 2)::float8, a.peak_viewers
  FROM generate_series(date_bin(make_interval(secs => $4::bigint), $2::timestamptz, timestamptz '1970-01-01 00:00:00+00'),
                       $3::timestamptz - interval '1 microsecond', make_interval(secs => $4::bigint)) AS b(t)
 CROSS JOIN LATERAL (
    SELECT avg(viewer_count) AS avg_viewers, max(peak_viewers) AS peak_viewers, count(*) AS n
      FROM viewer_stats_snapshots
     WHERE stage_arn = $1
       AND snapshot_time >= GREATEST(b.t, $2::timestamptz)
       AND snapshot_time < LEAST(b.t + make_interval(secs => $4::bigint), $3::timestamptz)
 ) a
 WHERE a.n > 0
 ORDER BY b.t`

// Series returns stage's snapshot rows with from <= time < to in buckets of
// step (whole seconds), oldest first. A bucket without a row is absent;
// one whose rows count 0 is a point of 0.
func (db *DB) Series(ctx context.Context, stage string, from, to time.Time, step time.Duration) ([]SeriesPoint, error) {
	rows, err := db.Pool.Query(ctx, seriesSQL, stage, from, to, int64(step/time.Second))
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SeriesPoint, error) {
		var p SeriesPoint
		err := r.Scan(&p.Time, &p.AvgViewers, &p.PeakViewers)
		p.Time = p.Time.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	return out, nil
}

// Classify is what the projector makes of a user agent: device type, OS,
// browser ("" for none).
type Classify func(userAgent string) (deviceType, os, browser string)

// $1 after, $2 limit.
const unclassifiedSQL = `
SELECT session_id, coalesce(user_agent, '')
  FROM viewer_sessions
 WHERE session_id > $1 AND device_type IS NULL AND joined_at IS NOT NULL
 ORDER BY session_id
 LIMIT $2`

// classifySQL sets what is still unset, so a join projected meanwhile wins
// nothing and loses nothing (the projector's values are the same).
const classifySQL = `
UPDATE viewer_sessions v
   SET device_type = c.device_type, os = coalesce(v.os, c.os), browser = coalesce(v.browser, c.browser)
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS c(session_id, device_type, os, browser)
 WHERE v.session_id = c.session_id AND v.device_type IS NULL`

// BackfillDevices classifies, page by page in session_id order, every
// session whose join is projected but whose device_type is NULL (rows from
// before migration 00003), and returns how many it set. It can run while
// projectors write and be repeated.
func (db *DB) BackfillDevices(ctx context.Context, classify Classify, page int) (int64, error) {
	var total int64
	after := ""
	for {
		rows, err := db.Pool.Query(ctx, unclassifiedSQL, after, page)
		if err != nil {
			return total, fmt.Errorf("backfill devices: %w", err)
		}
		var ids, devices, oses, browsers []string
		var id, ua string
		_, err = pgx.ForEachRow(rows, []any{&id, &ua}, func() error {
			d, o, b := classify(ua)
			ids, devices = append(ids, id), append(devices, d)
			oses, browsers = append(oses, o), append(browsers, b)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("backfill devices: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		tag, err := db.Pool.Exec(ctx, classifySQL, ids, devices, textArray(oses), textArray(browsers))
		if err != nil {
			return total, fmt.Errorf("backfill devices: %w", err)
		}
		total += tag.RowsAffected()
		after = ids[len(ids)-1]
	}
}

// textArray is ss as a text[] whose "" elements are NULL.
func textArray(ss []string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		if ss[i] != "" {
			out[i] = &ss[i]
		}
	}
	return out
}
