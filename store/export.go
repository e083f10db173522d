package store

import (
	"context"
	"fmt"
	"time"
)

// ExportColumns name the fields of each exported session, in order: the
// viewer_sessions columns, NULL as "", times in UTC as RFC 3339 with
// microseconds, watch_duration_seconds empty while the session is open.
var ExportColumns = []string{
	"session_id", "user_id", "stage_arn", "participant_id", "joined_at", "last_seen_at", "left_at",
	"end_reason", "watch_duration_seconds", "user_agent", "ip_address", "country_code",
	"device_type", "os", "browser",
}

// exportTimeFormat is to_char's form of an exported time (the column read
// AT TIME ZONE 'UTC').
const exportTimeFormat = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`

const exportSelect = `
SELECT session_id, user_id, stage_arn, coalesce(participant_id, ''), coalesce(to_char(joined_at AT TIME ZONE 'UTC', ` + exportTimeFormat + `), ''),
       coalesce(to_char(last_seen_at AT TIME ZONE 'UTC', ` + exportTimeFormat + `), ''), coalesce(to_char(left_at AT TIME ZONE 'UTC', ` + exportTimeFormat + `), ''), coalesce(end_reason, ''),
       coalesce(watch_duration_seconds::text, ''), coalesce(user_agent, ''), coalesce(host(ip_address), ''),
       coalesce(country_code, ''), coalesce(device_type, ''), coalesce(os, ''), coalesce(browser, '')
  FROM viewer_sessions`

// $1 stage, $2 from, $3 to: the stage's sessions that joined in [from, to),
// in join order (the (stage_arn, joined_at) index).
const exportStageSQL = exportSelect + `
 WHERE stage_arn = $1 AND joined_at >= $2 AND joined_at < $3
 ORDER BY joined_at, session_id`

// $1 user: every session of the user whose join is projected, newest first
// (the (user_id, joined_at, session_id) index).
const exportUserSQL = exportSelect + `
 WHERE user_id = $1 AND joined_at IS NOT NULL
 ORDER BY joined_at DESC, session_id DESC`

// Export calls start once the query has answered (before the first row, or
// at the end when there is none) and then row for each session, one at a
// time as PostgreSQL sends them: nothing is held but the current row, whose
// slice row must not keep. An error before start is the query's, and
// nothing was written.
type Export struct {
	Start func() error
	Row   func(fields []string) error
}

// ExportStageSessions streams stage's sessions (bots included) that joined
// in [from, to), in join order, to x.
func (db *DB) ExportStageSessions(ctx context.Context, stage string, from, to time.Time, x Export) error {
	return db.export(ctx, x, exportStageSQL, stage, from, to)
}

// ExportUserSessions streams every session of user (bots included), newest
// first, to x.
func (db *DB) ExportUserSessions(ctx context.Context, user string, x Export) error {
	return db.export(ctx, x, exportUserSQL, user)
}

func (db *DB) export(ctx context.Context, x Export, sql string, args ...any) error {
	rows, err := db.Pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer rows.Close()
	fields := make([]string, len(ExportColumns))
	dst := make([]any, len(fields))
	for i := range fields {
		dst[i] = &fields[i]
	}
	started := false
	for rows.Next() {
		if !started {
			if err := x.Start(); err != nil {
				return err
			}
			started = true
		}
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := x.Row(fields); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if !started {
		return x.Start()
	}
	return nil
}
