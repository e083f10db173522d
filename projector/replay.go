package projector

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/store"
)

// ErrTargetNotEmpty is returned by Replay when the target database already
// holds sessions or users.
var ErrTargetNotEmpty = errors.New("replay target is not empty")

// ReplayReport says what Replay read and applied.
type ReplayReport struct {
	Entries   int    // stream entries read
	Applied   int    // entries applied
	Skipped   int    // entries that cannot be decoded, or that PostgreSQL refuses: the live projector dead-letters them too
	FirstID   string // the oldest entry read
	LastID    string // the newest entry read
	Truncated bool   // entries had been trimmed or deleted from the stream: the replay covers only what it still holds
	// Partitions has the report of each partition's stream when several
	// were replayed (ReplayPartitions); the fields above are then their
	// sums (Truncated: any), FirstID and LastID empty.
	Partitions []PartitionReplay `json:",omitempty"`
}

// PartitionReplay is the replay report of one partition's stream.
type PartitionReplay struct {
	Partition int
	ReplayReport
}

// ReplayPartitions replays the streams of parts (one partition's keys each)
// one after the other into the empty database into, as Replay does for one:
// the merge is order-free, and a session's events are all in its stage's
// partition.
func ReplayPartitions(ctx context.Context, rdb redis.UniversalClient, parts []events.Keys, into *store.DB, pageSize int) (ReplayReport, error) {
	if len(parts) == 1 {
		return Replay(ctx, rdb, parts[0], into, pageSize)
	}
	var total ReplayReport
	if err := checkEmpty(ctx, into); err != nil {
		return total, err
	}
	for _, k := range parts {
		r, err := replay(ctx, rdb, k, into, pageSize)
		total.Entries += r.Entries
		total.Applied += r.Applied
		total.Skipped += r.Skipped
		total.Truncated = total.Truncated || r.Truncated
		total.Partitions = append(total.Partitions, PartitionReplay{Partition: k.Partition(), ReplayReport: r})
		if err != nil {
			return total, fmt.Errorf("partition %d: %w", k.Partition(), err)
		}
	}
	return total, nil
}

// Replay rebuilds the history from the stream into the empty database into,
// reading the stream from its start in pages of pageSize entries (0: 5000)
// and applying each page through the same Fold and ApplyBatch as the live
// projector. Errors: ErrTargetNotEmpty, or what Redis or PostgreSQL return.
func Replay(ctx context.Context, rdb redis.UniversalClient, keys events.Keys, into *store.DB, pageSize int) (ReplayReport, error) {
	if err := checkEmpty(ctx, into); err != nil {
		return ReplayReport{}, err
	}
	return replay(ctx, rdb, keys, into, pageSize)
}

func checkEmpty(ctx context.Context, into *store.DB) error {
	sessions, err := into.SessionsAfter(ctx, "", 1)
	if err != nil {
		return err
	}
	users, err := into.UsersAfter(ctx, "", 1)
	if err != nil {
		return err
	}
	if len(sessions)+len(users) > 0 {
		return ErrTargetNotEmpty
	}
	return nil
}

func replay(ctx context.Context, rdb redis.UniversalClient, keys events.Keys, into *store.DB, pageSize int) (ReplayReport, error) {
	var rep ReplayReport
	if pageSize <= 0 {
		pageSize = 5000
	}
	var err error
	rep.Truncated, err = events.Truncated(ctx, rdb, keys)
	if err != nil {
		return rep, fmt.Errorf("replay: %w", err)
	}
	apply := func(ctx context.Context, entries []entry) error {
		evs := make([]events.Event, len(entries))
		for i, e := range entries {
			evs[i] = e.ev
		}
		if err := into.ApplyBatch(ctx, Fold(evs)); err != nil {
			return err
		}
		rep.Applied += len(entries)
		return nil
	}
	skip := func(context.Context, entry, error) error { rep.Skipped++; return nil }
	for {
		msgs, err := events.Range(ctx, rdb, keys, rep.LastID, pageSize)
		if err != nil {
			return rep, fmt.Errorf("replay: %w", err)
		}
		if len(msgs) == 0 {
			return rep, nil
		}
		if rep.FirstID == "" {
			rep.FirstID = msgs[0].ID
		}
		rep.LastID = msgs[len(msgs)-1].ID
		rep.Entries += len(msgs)
		entries := make([]entry, 0, len(msgs))
		for _, m := range msgs {
			ev, err := events.Decode(m.ID, m.Values)
			if err != nil {
				rep.Skipped++
				continue
			}
			entries = append(entries, entry{msg: m, ev: ev})
		}
		if len(entries) > 0 {
			if err := applySplitting(ctx, entries, apply, skip); err != nil {
				return rep, fmt.Errorf("replay: %w", err)
			}
		}
	}
}

// Comparison is the result of Compare, per table.
type Comparison struct {
	Sessions TableDiff
	Users    TableDiff
}

// Equal reports whether both tables are equal row for row.
func (c Comparison) Equal() bool { return c.Sessions.Equal() && c.Users.Equal() }

// TableDiff counts the rows of one table in both databases and how they
// differ. Examples holds up to five keys of differing rows.
type TableDiff struct {
	Live, Replayed int
	OnlyLive       int
	OnlyReplayed   int
	Different      int
	Examples       []string
}

// Equal reports whether no row differs.
func (d TableDiff) Equal() bool { return d.OnlyLive+d.OnlyReplayed+d.Different == 0 }

func (d *TableDiff) example(key string) {
	if len(d.Examples) < 5 {
		d.Examples = append(d.Examples, key)
	}
}

// Compare compares viewer_sessions and users of live and replayed row for
// row, every column, walking both in key order a page at a time, so the two
// may live on different servers.
func Compare(ctx context.Context, live, replayed *store.DB) (Comparison, error) {
	var c Comparison
	var err error
	c.Sessions, err = compareTable(ctx, live.SessionsAfter, replayed.SessionsAfter,
		func(s store.SessionRow) string { return s.SessionID })
	if err != nil {
		return c, fmt.Errorf("compare sessions: %w", err)
	}
	c.Users, err = compareTable(ctx, live.UsersAfter, replayed.UsersAfter,
		func(u store.UserRow) string { return u.UserID })
	if err != nil {
		return c, fmt.Errorf("compare users: %w", err)
	}
	return c, nil
}

// comparePage is how many rows compareTable reads at a time from each side.
const comparePage = 2000

// compareTable merge-joins two key-ordered tables read with the page
// functions.
func compareTable[R comparable](ctx context.Context, livePage, replayPage func(context.Context, string, int) ([]R, error),
	key func(R) string) (TableDiff, error) {
	var d TableDiff
	a, b := &cursor[R]{page: livePage, key: key}, &cursor[R]{page: replayPage, key: key}
	for {
		ra, okA, err := a.peek(ctx)
		if err != nil {
			return d, err
		}
		rb, okB, err := b.peek(ctx)
		if err != nil {
			return d, err
		}
		switch {
		case !okA && !okB:
			return d, nil
		case okA && (!okB || key(ra) < key(rb)):
			d.Live++
			d.OnlyLive++
			d.example(key(ra))
			a.next()
		case okB && (!okA || key(rb) < key(ra)):
			d.Replayed++
			d.OnlyReplayed++
			d.example(key(rb))
			b.next()
		default:
			d.Live++
			d.Replayed++
			if ra != rb {
				d.Different++
				d.example(key(ra))
			}
			a.next()
			b.next()
		}
	}
}

// cursor walks a table page by page.
// ComparePartition compares the sessions of partition part (of parts) in
// live with those in replayed, which holds a replay of that partition
// alone; users are not compared (a user's sessions span partitions).
func ComparePartition(ctx context.Context, live, replayed *store.DB, part, parts int) (Comparison, error) {
	key := func(s store.SessionRow) string { return s.SessionID }
	mine := func(s store.SessionRow) bool { return events.PartitionOf(s.StageARN, parts) == part }
	var c Comparison
	var err error
	c.Sessions, err = compareTable(ctx, filterPage(live.SessionsAfter, key, mine), replayed.SessionsAfter, key)
	if err != nil {
		return c, fmt.Errorf("compare sessions: %w", err)
	}
	return c, nil
}

// filterPage returns a page function giving only the rows of page that
// keep accepts: at least n of them unless page runs out.
func filterPage[R any](page func(context.Context, string, int) ([]R, error), key func(R) string,
	keep func(R) bool) func(context.Context, string, int) ([]R, error) {
	return func(ctx context.Context, after string, n int) ([]R, error) {
		var out []R
		for len(out) < n {
			rows, err := page(ctx, after, n)
			if err != nil {
				return nil, err
			}
			for _, r := range rows {
				if keep(r) {
					out = append(out, r)
				}
			}
			if len(rows) < n {
				break
			}
			after = key(rows[len(rows)-1])
		}
		return out, nil
	}
}

type cursor[R any] struct {
	page  func(context.Context, string, int) ([]R, error)
	key   func(R) string
	rows  []R
	after string
	done  bool
}

func (c *cursor[R]) peek(ctx context.Context) (R, bool, error) {
	var zero R
	if len(c.rows) == 0 && !c.done {
		rows, err := c.page(ctx, c.after, comparePage)
		if err != nil {
			return zero, false, err
		}
		c.rows, c.done = rows, len(rows) < comparePage
		if len(rows) > 0 {
			c.after = c.key(rows[len(rows)-1])
		}
	}
	if len(c.rows) == 0 {
		return zero, false, nil
	}
	return c.rows[0], true, nil
}

func (c *cursor[R]) next() { c.rows = c.rows[1:] }
