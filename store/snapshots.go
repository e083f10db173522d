package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Snapshot is one row of a stage's count series: the live count at Time, an
// interval boundary, and the highest count seen in the interval that ended
// there.
type Snapshot struct {
	Stage   string    `json:"stage_arn"`
	Time    time.Time `json:"snapshot_time"`
	Viewers int64     `json:"viewer_count"`
	Peak    int64     `json:"peak_viewers"`
}

// insertSnapshotsSQL writes every row in one statement. ON CONFLICT DO NOTHING
// makes the first writer of a (stage, time) win, so any number of
// snapshotters produce one row per stage and boundary.
const insertSnapshotsSQL = `
INSERT INTO viewer_stats_snapshots (stage_arn, snapshot_time, viewer_count, peak_viewers)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::integer[], $4::integer[])
ON CONFLICT (stage_arn, snapshot_time) DO NOTHING`

// InsertSnapshots writes rows, skipping any (stage, time) already written, and
// returns how many it inserted. Errors: the database's own.
func (db *DB) InsertSnapshots(ctx context.Context, rows []Snapshot) (inserted int64, err error) {
	if len(rows) == 0 {
		return 0, nil
	}
	stages := make([]string, len(rows))
	times := make([]time.Time, len(rows))
	viewers := make([]int64, len(rows))
	peaks := make([]int64, len(rows))
	for i, r := range rows {
		stages[i], times[i], viewers[i], peaks[i] = r.Stage, r.Time, r.Viewers, r.Peak
	}
	tag, err := db.Pool.Exec(ctx, insertSnapshotsSQL, stages, times, viewers, peaks)
	if err != nil {
		return 0, fmt.Errorf("insert snapshots: %w", err)
	}
	return tag.RowsAffected(), nil
}

const snapshotsSQL = `
SELECT stage_arn, snapshot_time, viewer_count, peak_viewers
FROM viewer_stats_snapshots
WHERE stage_arn = $1 AND snapshot_time >= $2 AND snapshot_time < $3
ORDER BY snapshot_time`

// Snapshots returns stage's rows with from <= time < to, oldest first.
// Errors: the database's own.
func (db *DB) Snapshots(ctx context.Context, stage string, from, to time.Time) ([]Snapshot, error) {
	rows, err := db.Pool.Query(ctx, snapshotsSQL, stage, from, to)
	if err != nil {
		return nil, fmt.Errorf("snapshots %s: %w", stage, err)
	}
	out, err := pgx.CollectRows(rows, scanSnapshot)
	if err != nil {
		return nil, fmt.Errorf("snapshots %s: %w", stage, err)
	}
	return out, nil
}

// latestSnapshotsSQL walks the (stage_arn, snapshot_time) unique index
// backwards once per stage.
const latestSnapshotsSQL = `
SELECT DISTINCT ON (stage_arn) stage_arn, snapshot_time, viewer_count, peak_viewers
FROM viewer_stats_snapshots
WHERE stage_arn = ANY($1) AND snapshot_time >= $2 AND snapshot_time < $3
ORDER BY stage_arn, snapshot_time DESC`

// LatestSnapshots returns, for each of stages that has one, its newest row
// with from <= time < to, keyed by stage. Errors: the database's own.
func (db *DB) LatestSnapshots(ctx context.Context, stages []string, from, to time.Time) (map[string]Snapshot, error) {
	out := make(map[string]Snapshot, len(stages))
	if len(stages) == 0 {
		return out, nil
	}
	rows, err := db.Pool.Query(ctx, latestSnapshotsSQL, stages, from, to)
	if err != nil {
		return nil, fmt.Errorf("latest snapshots: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanSnapshot)
	if err != nil {
		return nil, fmt.Errorf("latest snapshots: %w", err)
	}
	for _, s := range list {
		out[s.Stage] = s
	}
	return out, nil
}

func scanSnapshot(row pgx.CollectableRow) (Snapshot, error) {
	var s Snapshot
	err := row.Scan(&s.Stage, &s.Time, &s.Viewers, &s.Peak)
	s.Time = s.Time.UTC()
	return s, err
}
