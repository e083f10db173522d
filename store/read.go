package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"
)

// watchedSeconds is a session's watch time in whole seconds, an open session
// counting up to now: coalesce(left_at, now) - joined_at, never below zero.
// For a closed session it equals the stored watch_duration_seconds. Every
// query that uses it passes now as $2.
const watchedSeconds = `GREATEST(0, floor(extract(epoch FROM (coalesce(left_at, $2::timestamptz) - joined_at))))::bigint`

// StageStats are a stage's figures over a window of days ending now.
type StageStats struct {
	// TotalViews counts the sessions that joined in the window.
	TotalViews    int64 `json:"total_views"`
	UniqueViewers int64 `json:"unique_viewers"`
	// The watch figures count open sessions up to now.
	AvgWatchSeconds   float64 `json:"avg_watch_seconds"`
	MaxWatchSeconds   int64   `json:"max_watch_seconds"`
	TotalWatchSeconds int64   `json:"total_watch_seconds"`
	// The percentiles (continuous, interpolated) are over the sessions of
	// the window that have closed: an open session has no duration yet and
	// is left out. nil when none has closed.
	MedianWatchSeconds *float64 `json:"median_watch_seconds"`
	P90WatchSeconds    *float64 `json:"p90_watch_seconds"`
	// ReturningViewers counts the window's viewers who joined the stage
	// before the window too.
	ReturningViewers int64 `json:"returning_viewers"`
	// PeakViewers is the highest peak_viewers of the stage's snapshot rows in
	// the window; PeakAt is that row's snapshot_time (the earliest on ties),
	// nil when the window holds no snapshot.
	PeakViewers int        `json:"peak_viewers"`
	PeakAt      *time.Time `json:"peak_at"`
}

// notBot keeps a session unless its user agent is a bot's ($4 true: keep
// every session). A session not classified yet (NULL) counts as a viewer.
const notBot = `($4::bool OR device_type IS DISTINCT FROM 'bot')`

// $1 stage, $2 now, $3 days, $4 include bots. Sessions whose join is not
// projected yet (joined_at NULL) are left out.
const stageStats = `
WITH s AS (
    SELECT user_id, ` + watchedSeconds + ` AS watched, left_at IS NOT NULL AS closed
      FROM viewer_sessions
     WHERE stage_arn = $1
       AND joined_at > $2::timestamptz - make_interval(days => $3::int) AND joined_at <= $2::timestamptz
       AND ` + notBot + `
), r AS (
    SELECT count(*) AS n
      FROM (SELECT DISTINCT user_id FROM s) u
     WHERE EXISTS (SELECT 1 FROM viewer_sessions o
                    WHERE o.user_id = u.user_id AND o.stage_arn = $1
                      AND o.joined_at <= $2::timestamptz - make_interval(days => $3::int)
                      AND ($4::bool OR o.device_type IS DISTINCT FROM 'bot'))
), p AS (
    SELECT peak_viewers, snapshot_time
      FROM viewer_stats_snapshots
     WHERE stage_arn = $1
       AND snapshot_time > $2::timestamptz - make_interval(days => $3::int) AND snapshot_time <= $2::timestamptz
     ORDER BY peak_viewers DESC, snapshot_time
     LIMIT 1
)
SELECT count(*), count(DISTINCT user_id), coalesce(round(avg(watched), 2), 0)::float8,
       coalesce(max(watched), 0), coalesce(sum(watched), 0)::bigint,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY watched) FILTER (WHERE closed))::numeric, 2)::float8,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY watched) FILTER (WHERE closed))::numeric, 2)::float8,
       (SELECT n FROM r),
       coalesce((SELECT peak_viewers FROM p), 0), (SELECT snapshot_time FROM p)
  FROM s`

// StageStats returns stage's figures over the days ending at now; sessions
// of bots count only with includeBots. An unknown stage has zero figures and
// no peak.
func (db *DB) StageStats(ctx context.Context, stage string, days int, now time.Time, includeBots bool) (StageStats, error) {
	var st StageStats
	err := db.Pool.QueryRow(ctx, stageStats, stage, now, days, includeBots).Scan(&st.TotalViews, &st.UniqueViewers,
		&st.AvgWatchSeconds, &st.MaxWatchSeconds, &st.TotalWatchSeconds, &st.MedianWatchSeconds, &st.P90WatchSeconds,
		&st.ReturningViewers, &st.PeakViewers, &st.PeakAt)
	if err != nil {
		return StageStats{}, fmt.Errorf("stage stats: %w", err)
	}
	if st.PeakAt != nil {
		t := st.PeakAt.UTC()
		st.PeakAt = &t
	}
	return st, nil
}

// Session is one viewing session of a user's history.
type Session struct {
	SessionID     string     `json:"session_id"`
	StageARN      string     `json:"stage_arn"`
	ParticipantID *string    `json:"participant_id"`
	JoinedAt      time.Time  `json:"joined_at"`
	LastSeenAt    time.Time  `json:"last_seen_at"`
	LeftAt        *time.Time `json:"left_at"` // nil while open
	EndReason     *string    `json:"end_reason"`
	// WatchSeconds counts an open session up to now.
	WatchSeconds int64   `json:"watch_duration_seconds"`
	UserAgent    *string `json:"user_agent"`
	IPAddress    *string `json:"ip_address"`
	CountryCode  *string `json:"country_code"`
}

// History is one page of a user's sessions, newest first. Next, when not
// empty, is the cursor of the following page.
type History struct {
	Sessions []Session `json:"sessions"`
	Next     string    `json:"next_cursor,omitempty"`
}

// $1 user, $2 now, $3 limit, then the cursor's joined_at and session_id.
const historySelect = `
SELECT session_id, stage_arn, participant_id, joined_at, last_seen_at, left_at, end_reason,
       ` + watchedSeconds + `, user_agent, host(ip_address), country_code
  FROM viewer_sessions
 WHERE user_id = $1 AND joined_at IS NOT NULL`

const (
	historyFirst = historySelect + `
 ORDER BY joined_at DESC, session_id DESC LIMIT $3`
	historyAfter = historySelect + `
   AND (joined_at, session_id) < ($4::timestamptz, $5::text)
 ORDER BY joined_at DESC, session_id DESC LIMIT $3`
)

// UserHistory returns up to limit of user's sessions, newest first by
// (joined_at, session_id), after cursor (empty: from the newest). Open
// sessions count up to now. Errors: ErrInvalidCursor.
func (db *DB) UserHistory(ctx context.Context, user string, limit int, cursor string, now time.Time) (History, error) {
	var rows pgx.Rows
	var err error
	if cursor == "" {
		rows, err = db.Pool.Query(ctx, historyFirst, user, now, limit+1)
	} else {
		at, id, perr := parseCursor(cursor)
		if perr != nil {
			return History{}, perr
		}
		rows, err = db.Pool.Query(ctx, historyAfter, user, now, limit+1, at, id)
	}
	if err != nil {
		return History{}, fmt.Errorf("user history: %w", err)
	}
	sessions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) {
		var s Session
		err := r.Scan(&s.SessionID, &s.StageARN, &s.ParticipantID, &s.JoinedAt, &s.LastSeenAt, &s.LeftAt,
			&s.EndReason, &s.WatchSeconds, &s.UserAgent, &s.IPAddress, &s.CountryCode)
		s.JoinedAt, s.LastSeenAt = s.JoinedAt.UTC(), s.LastSeenAt.UTC()
		if s.LeftAt != nil {
			t := s.LeftAt.UTC()
			s.LeftAt = &t
		}
		return s, err
	})
	if err != nil {
		return History{}, fmt.Errorf("user history: %w", err)
	}
	h := History{Sessions: sessions}
	if len(sessions) > limit {
		h.Sessions = sessions[:limit]
		last := h.Sessions[limit-1]
		h.Next = formatCursor(last.JoinedAt, last.SessionID)
	}
	return h, nil
}

// A cursor is base64url("<joined_at Unix µs>:<session_id>") of the last row
// of a page: opaque to clients, exact to PostgreSQL's microseconds.
func formatCursor(joined time.Time, session string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(joined.UnixMicro(), 10) + ":" + session))
}

// maxCursorMicros bounds a cursor's time to before the year 10000: joins are
// stamped with the clock, and PostgreSQL refuses times far enough out.
const maxCursorMicros = 253402300800000000

// parseCursor accepts exactly what formatCursor makes: strict base64url, a
// canonical decimal time from 1970 to 9999 and a session id that is a
// canonical ULID, as join makes them. Anything else, which could carry bytes
// PostgreSQL refuses as text, is ErrInvalidCursor.
func parseCursor(c string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil {
		return time.Time{}, "", ErrInvalidCursor
	}
	micros, session, ok := strings.Cut(string(raw), ":")
	if !ok {
		return time.Time{}, "", ErrInvalidCursor
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil || us < 0 || us >= maxCursorMicros || strconv.FormatInt(us, 10) != micros {
		return time.Time{}, "", ErrInvalidCursor
	}
	if !sessionIDForm(session) {
		return time.Time{}, "", ErrInvalidCursor
	}
	return time.UnixMicro(us).UTC(), session, nil
}

// sessionIDForm reports whether id has the form of a session ID: a ULID in
// upper case, alone (the layout before partitions) or followed by 14 more
// Crockford characters (events.SessionIDLen).
func sessionIDForm(id string) bool {
	if len(id) != 26 && len(id) != 40 {
		return false
	}
	if u, err := ulid.ParseStrict(id[:26]); err != nil || u.String() != id[:26] {
		return false
	}
	for i := 26; i < len(id); i++ {
		if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", rune(id[i])) {
			return false
		}
	}
	return true
}
