package store

import (
	"context"
	"fmt"
)

// replicaLagSQL: how far behind its primary a standby's data is, in
// seconds: 0 when it has replayed all it received (an idle primary sends
// nothing, which is no lag), else the age of the last transaction replayed.
// A primary answers NULL.
const replicaLagSQL = `
SELECT CASE
  WHEN NOT pg_is_in_recovery() THEN NULL
  WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
  ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
END::float8`

// ReplicaLag reports whether db is a standby and, if so, how many seconds
// its data lags behind the primary's: the most by which a read served from it
// can be out of date. Errors: the database's own.
func (db *DB) ReplicaLag(ctx context.Context) (lag float64, standby bool, err error) {
	var v *float64
	if err := db.Pool.QueryRow(ctx, replicaLagSQL).Scan(&v); err != nil {
		return 0, false, fmt.Errorf("replica lag: %w", err)
	}
	if v == nil {
		return 0, false, nil
	}
	return *v, true, nil
}
