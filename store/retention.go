package store

import (
	"context"
	"fmt"
	"time"
)

// DefaultDeleteBatch is how many rows one retention statement deletes: small
// enough that each statement holds its row locks for milliseconds and never
// blocks the projector or the read API for long.
const DefaultDeleteBatch = 5000

// Each statement deletes at most $2 rows picked through an index on the time
// column; the caller repeats it until it deletes none.
const (
	deleteSnapshotsSQL = `
DELETE FROM viewer_stats_snapshots WHERE ctid IN (
    SELECT ctid FROM viewer_stats_snapshots WHERE snapshot_time < $1 LIMIT $2)`

	// left_at has no index; joined_at <= left_at does, and a row whose join
	// was never projected (joined_at NULL) is still found through it.
	deleteSessionsSQL = `
DELETE FROM viewer_sessions WHERE ctid IN (
    SELECT ctid FROM viewer_sessions
    WHERE left_at < $1 AND (joined_at < $1 OR joined_at IS NULL)
    LIMIT $2)`
)

// DeleteSnapshotsBefore deletes snapshot rows older than before, batch rows
// per statement (DefaultDeleteBatch when batch <= 0), and returns how many it
// deleted. Errors: the database's own, with what was deleted so far.
func (db *DB) DeleteSnapshotsBefore(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := db.deleteInBatches(ctx, deleteSnapshotsSQL, before, batch)
	if err != nil {
		return n, fmt.Errorf("delete snapshots: %w", err)
	}
	return n, nil
}

// DeleteSessionsLeftBefore deletes closed sessions whose left_at is older than
// before (open sessions are never deleted), batch rows per statement, and
// returns how many it deleted. Errors: the database's own, with what was
// deleted so far.
func (db *DB) DeleteSessionsLeftBefore(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := db.deleteInBatches(ctx, deleteSessionsSQL, before, batch)
	if err != nil {
		return n, fmt.Errorf("delete sessions: %w", err)
	}
	return n, nil
}

// deleteInBatches runs query (params: cut-off, batch size) in its own
// short transaction until it deletes fewer rows than a batch.
func (db *DB) deleteInBatches(ctx context.Context, query string, before time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultDeleteBatch
	}
	var total int64
	for {
		tag, err := db.Pool.Exec(ctx, query, before, batch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
