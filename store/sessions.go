package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// SessionDelta is what one batch of events says about one session: the
// events of the batch already folded together. Zero times and empty strings
// mean "this batch does not know" and never overwrite what the row holds.
type SessionDelta struct {
	SessionID     string
	UserID        string
	StageARN      string
	ParticipantID string
	JoinedAt      time.Time // earliest join (or closing event's joined)
	LastSeenAt    time.Time // latest sign of life; required
	LeftAt        time.Time // closing event's last_seen
	EndReason     string    // "leave" or "timeout"
	UserAgent     string
	IPAddress     string
	CountryCode   string
	// DeviceType, OS and Browser classify UserAgent (the projector fills
	// them at the join); merged first non-empty like it.
	DeviceType string
	OS         string
	Browser    string
	// FirstSeenAt is the earliest event time of the session in the batch; the
	// users row's created_at is the least of these.
	FirstSeenAt time.Time
}

// Merge folds o into d with the same rules the merging INSERT applies, so
// merging in Go before COPY and merging in PostgreSQL agree: earliest
// JoinedAt and FirstSeenAt, latest LastSeenAt and LeftAt, first non-empty
// string. d and o must be the same session.
func (d *SessionDelta) Merge(o SessionDelta) {
	d.JoinedAt = minTime(d.JoinedAt, o.JoinedAt)
	d.FirstSeenAt = minTime(d.FirstSeenAt, o.FirstSeenAt)
	d.LastSeenAt = maxTime(d.LastSeenAt, o.LastSeenAt)
	d.LeftAt = maxTime(d.LeftAt, o.LeftAt)
	first := func(a *string, b string) {
		if *a == "" {
			*a = b
		}
	}
	first(&d.UserID, o.UserID)
	first(&d.StageARN, o.StageARN)
	first(&d.ParticipantID, o.ParticipantID)
	first(&d.EndReason, o.EndReason)
	first(&d.UserAgent, o.UserAgent)
	first(&d.IPAddress, o.IPAddress)
	first(&d.CountryCode, o.CountryCode)
	first(&d.DeviceType, o.DeviceType)
	first(&d.OS, o.OS)
	first(&d.Browser, o.Browser)
}

// minTime is the earlier of two times, a zero time counting as unknown.
func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// maxTime is the later of two times, a zero time counting as unknown.
func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// CoalesceDeltas merges rows of the same session into one, returning one row
// per session ordered by session ID.
func CoalesceDeltas(rows []SessionDelta) []SessionDelta {
	byID := make(map[string]int, len(rows))
	out := make([]SessionDelta, 0, len(rows))
	for _, r := range rows {
		if i, ok := byID[r.SessionID]; ok {
			out[i].Merge(r)
			continue
		}
		byID[r.SessionID] = len(out)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b SessionDelta) int { return strings.Compare(a.SessionID, b.SessionID) })
	return out
}

// stagingTable lives in each connection's temporary schema and is emptied at
// every commit or rollback, so one table serves every batch on a connection
// without catalog churn.
const stagingTable = "vp_session_staging"

const createStaging = `CREATE TEMP TABLE IF NOT EXISTS ` + stagingTable + ` (
    session_id     text NOT NULL,
    user_id        text NOT NULL,
    stage_arn      text NOT NULL,
    participant_id text,
    joined_at      timestamptz,
    last_seen_at   timestamptz NOT NULL,
    left_at        timestamptz,
    end_reason     text,
    user_agent     text,
    ip_address     text,
    country_code   text,
    first_seen_at  timestamptz NOT NULL,
    device_type    text,
    os             text,
    browser        text
) ON COMMIT DELETE ROWS`

var stagingColumns = []string{
	"session_id", "user_id", "stage_arn", "participant_id", "joined_at", "last_seen_at",
	"left_at", "end_reason", "user_agent", "ip_address", "country_code", "first_seen_at",
	"device_type", "os", "browser",
}

// mergeSessions merges the staged rows into viewer_sessions. Every rule is
// order-free and repeat-safe (LEAST, GREATEST, first non-null; LEAST and
// GREATEST ignore NULLs), so redelivered or reordered batches give the same
// row. Rows are taken in session_id order so that concurrent batches lock
// shared rows in one order. The WHERE skips rows the batch does not change,
// which keeps redelivery from rewriting (and bloating) them.
const mergeSessions = `
INSERT INTO viewer_sessions AS v (session_id, user_id, stage_arn, participant_id, joined_at,
    last_seen_at, left_at, end_reason, user_agent, ip_address, country_code, device_type, os, browser)
SELECT session_id, user_id, stage_arn, participant_id, joined_at,
    last_seen_at, left_at, end_reason, user_agent, ip_address::inet, country_code, device_type, os, browser
FROM ` + stagingTable + `
ORDER BY session_id
ON CONFLICT (session_id) DO UPDATE SET
    joined_at      = LEAST(v.joined_at, EXCLUDED.joined_at),
    last_seen_at   = GREATEST(v.last_seen_at, EXCLUDED.last_seen_at),
    left_at        = GREATEST(v.left_at, EXCLUDED.left_at),
    end_reason     = COALESCE(v.end_reason, EXCLUDED.end_reason),
    participant_id = COALESCE(v.participant_id, EXCLUDED.participant_id),
    user_agent     = COALESCE(v.user_agent, EXCLUDED.user_agent),
    ip_address     = COALESCE(v.ip_address, EXCLUDED.ip_address),
    country_code   = COALESCE(v.country_code, EXCLUDED.country_code),
    device_type    = COALESCE(v.device_type, EXCLUDED.device_type),
    os             = COALESCE(v.os, EXCLUDED.os),
    browser        = COALESCE(v.browser, EXCLUDED.browser)
WHERE v.joined_at IS DISTINCT FROM LEAST(v.joined_at, EXCLUDED.joined_at)
   OR v.last_seen_at < EXCLUDED.last_seen_at
   OR v.left_at IS DISTINCT FROM GREATEST(v.left_at, EXCLUDED.left_at)
   OR (v.end_reason IS NULL AND EXCLUDED.end_reason IS NOT NULL)
   OR (v.participant_id IS NULL AND EXCLUDED.participant_id IS NOT NULL)
   OR (v.user_agent IS NULL AND EXCLUDED.user_agent IS NOT NULL)
   OR (v.ip_address IS NULL AND EXCLUDED.ip_address IS NOT NULL)
   OR (v.country_code IS NULL AND EXCLUDED.country_code IS NOT NULL)
   OR (v.device_type IS NULL AND EXCLUDED.device_type IS NOT NULL)
   OR (v.os IS NULL AND EXCLUDED.os IS NOT NULL)
   OR (v.browser IS NULL AND EXCLUDED.browser IS NOT NULL)`

// mergeUsers records each user once, created at the first event seen of
// them, in user_id order. Only rows that know the join time take part: a
// session's join and its closing event both carry it and come before (or
// are) its other events, so heartbeat-only rows could never lower
// created_at, and skipping them spares an index probe per heartbeat.
const mergeUsers = `
INSERT INTO users AS u (user_id, created_at)
SELECT user_id, min(first_seen_at) FROM ` + stagingTable + `
WHERE joined_at IS NOT NULL
GROUP BY user_id
ORDER BY user_id
ON CONFLICT (user_id) DO UPDATE SET created_at = EXCLUDED.created_at
WHERE EXCLUDED.created_at < u.created_at`

// applyAttempts bounds the retries of a batch that lost a deadlock or a
// serialization conflict.
const applyAttempts = 5

// ApplyBatch merges rows into viewer_sessions and users in one transaction:
// COPY into a staging table, then one merging INSERT per table. Rows of the
// same session are merged first. Applying a batch twice, or batches in any
// order, gives the same rows. Deadlocks and serialization failures are
// retried; other errors are returned wrapped (a *pgconn.PgError for what
// PostgreSQL refused, for example a malformed IP address).
func (db *DB) ApplyBatch(ctx context.Context, rows []SessionDelta) error {
	rows = CoalesceDeltas(rows)
	if len(rows) == 0 {
		return nil
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = db.applyOnce(ctx, rows)
		if err == nil || !retryable(err) || attempt == applyAttempts {
			break
		}
		// Jittered pause so that the two losers of a deadlock do not meet again.
		pause := time.Duration(attempt) * time.Duration(5+rand.IntN(20)) * time.Millisecond
		select {
		case <-ctx.Done():
			return fmt.Errorf("apply batch: %w", ctx.Err())
		case <-time.After(pause):
		}
	}
	if err != nil {
		return fmt.Errorf("apply batch: %w", err)
	}
	return nil
}

func (db *DB) applyOnce(ctx context.Context, rows []SessionDelta) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, createStaging); err != nil {
			return fmt.Errorf("staging table: %w", err)
		}
		src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{
				r.SessionID, r.UserID, r.StageARN, nullString(r.ParticipantID),
				nullTime(r.JoinedAt), r.LastSeenAt, nullTime(r.LeftAt), nullString(r.EndReason),
				nullString(r.UserAgent), nullString(r.IPAddress), nullString(r.CountryCode),
				firstSeen(r), nullString(r.DeviceType), nullString(r.OS), nullString(r.Browser),
			}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, stagingColumns, src); err != nil {
			return fmt.Errorf("copy sessions: %w", err)
		}
		if _, err := tx.Exec(ctx, mergeSessions); err != nil {
			return fmt.Errorf("merge sessions: %w", err)
		}
		if _, err := tx.Exec(ctx, mergeUsers); err != nil {
			return fmt.Errorf("merge users: %w", err)
		}
		return nil
	})
}

// firstSeen falls back to the other times of a delta built by hand without
// FirstSeenAt.
func firstSeen(r SessionDelta) time.Time {
	t := minTime(r.FirstSeenAt, r.JoinedAt)
	return minTime(t, r.LastSeenAt)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// retryable reports a deadlock (40P01) or serialization failure (40001).
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// SessionRow is one viewer_sessions row. NULL reads as the zero value, times are
// in UTC, so rows compare with ==.
type SessionRow struct {
	SessionID            string
	UserID               string
	StageARN             string
	ParticipantID        string
	JoinedAt             time.Time
	LastSeenAt           time.Time
	LeftAt               time.Time
	EndReason            string
	WatchDurationSeconds sql.NullInt32
	UserAgent            string
	IPAddress            string
	CountryCode          string
	DeviceType           string
	OS                   string
	Browser              string
}

// UserRow is one users row, as SessionRow.
type UserRow struct {
	UserID    string
	Username  string
	Email     string
	CreatedAt time.Time
}

const sessionsAfter = `
SELECT session_id, user_id, stage_arn, coalesce(participant_id, ''), joined_at, last_seen_at,
    left_at, coalesce(end_reason, ''), watch_duration_seconds, coalesce(user_agent, ''),
    coalesce(host(ip_address), ''), coalesce(country_code, ''), coalesce(device_type, ''),
    coalesce(os, ''), coalesce(browser, '')
FROM viewer_sessions
WHERE session_id COLLATE "C" > $1
ORDER BY session_id COLLATE "C"
LIMIT $2`

// SessionsAfter returns up to limit sessions whose ID sorts (bytewise) after
// after, in that order: a page of the whole table, for replay comparison and
// tests.
func (db *DB) SessionsAfter(ctx context.Context, after string, limit int) ([]SessionRow, error) {
	rows, err := db.Pool.Query(ctx, sessionsAfter, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SessionRow, error) {
		var s SessionRow
		var joined, left pgtype.Timestamptz
		err := r.Scan(&s.SessionID, &s.UserID, &s.StageARN, &s.ParticipantID, &joined, &s.LastSeenAt,
			&left, &s.EndReason, &s.WatchDurationSeconds, &s.UserAgent, &s.IPAddress, &s.CountryCode,
			&s.DeviceType, &s.OS, &s.Browser)
		s.JoinedAt, s.LastSeenAt, s.LeftAt = joined.Time.UTC(), s.LastSeenAt.UTC(), left.Time.UTC()
		if !joined.Valid {
			s.JoinedAt = time.Time{}
		}
		if !left.Valid {
			s.LeftAt = time.Time{}
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

const usersAfter = `
SELECT user_id, coalesce(username, ''), coalesce(email, ''), created_at
FROM users
WHERE user_id COLLATE "C" > $1
ORDER BY user_id COLLATE "C"
LIMIT $2`

// UsersAfter is SessionsAfter for users.
func (db *DB) UsersAfter(ctx context.Context, after string, limit int) ([]UserRow, error) {
	rows, err := db.Pool.Query(ctx, usersAfter, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UserRow, error) {
		var u UserRow
		err := r.Scan(&u.UserID, &u.Username, &u.Email, &u.CreatedAt)
		u.CreatedAt = u.CreatedAt.UTC()
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}
