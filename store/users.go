package store

import (
	"context"
	"fmt"
	"time"
)

// User is what the history knows of one viewer.
type User struct {
	UserID   string  `json:"user_id"`
	Username *string `json:"username"`
	Email    *string `json:"email"`
	// FirstSeen is users.created_at (the first event seen of the user, or
	// when the profile was put before any), or the first session's join when
	// there is no users row yet.
	FirstSeen time.Time `json:"first_seen"`
	Sessions  int64     `json:"sessions"`
	// TotalWatchSeconds counts open sessions up to now.
	TotalWatchSeconds int64 `json:"total_watch_seconds"`
}

const getUser = `
WITH s AS (
    SELECT count(*) AS n, coalesce(sum(` + watchedSeconds + `), 0)::bigint AS total, min(joined_at) AS first
      FROM viewer_sessions
     WHERE user_id = $1 AND joined_at IS NOT NULL
)
SELECT u.username, u.email, LEAST(u.created_at, s.first), s.n, s.total, u.user_id IS NOT NULL
  FROM s LEFT JOIN users u ON u.user_id = $1`

// User returns user's profile and totals, open sessions counted up to now.
// A user is known when there is a users row or a session. Errors:
// ErrUserNotFound.
func (db *DB) User(ctx context.Context, user string, now time.Time) (User, error) {
	u := User{UserID: user}
	var first *time.Time
	var hasRow bool
	err := db.Pool.QueryRow(ctx, getUser, user, now).Scan(&u.Username, &u.Email, &first, &u.Sessions, &u.TotalWatchSeconds, &hasRow)
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	if !hasRow && u.Sessions == 0 {
		return User{}, ErrUserNotFound
	}
	if first != nil {
		u.FirstSeen = first.UTC()
	}
	return u, nil
}

const putUser = `
INSERT INTO users (user_id, username, email, created_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username, email = EXCLUDED.email
RETURNING (xmax = 0)`

// PutUser sets user's username and email (nil clears one), creating the user
// with first_seen = now when unknown, and reports whether it was created.
// Validation is the caller's; the table's checks are the backstop.
func (db *DB) PutUser(ctx context.Context, user string, username, email *string, now time.Time) (created bool, err error) {
	if err := db.Pool.QueryRow(ctx, putUser, user, username, email, now).Scan(&created); err != nil {
		return false, fmt.Errorf("put user: %w", err)
	}
	return created, nil
}
