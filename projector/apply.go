package projector

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"github.com/viewpulse/viewpulse/events"
)

// entry is a decoded stream entry.
type entry struct {
	msg redis.XMessage
	ev  events.Event
}

// applySplitting applies entries with apply. When PostgreSQL refuses them for
// their data it applies each half on its own, down to single entries, and
// hands every single entry it still refuses to poison; the others are
// applied. Any other error stops the search and is returned, so that an
// outage never dead-letters good entries.
func applySplitting(ctx context.Context, entries []entry, apply func(context.Context, []entry) error,
	poison func(context.Context, entry, error) error) error {
	err := apply(ctx, entries)
	switch {
	case err == nil:
		return nil
	case !refused(err):
		return err
	case len(entries) == 1:
		return poison(ctx, entries[0], err)
	}
	half := len(entries) / 2
	if err := applySplitting(ctx, entries[:half], apply, poison); err != nil {
		return err
	}
	return applySplitting(ctx, entries[half:], apply, poison)
}

// refused reports whether PostgreSQL rejected the data itself: a data
// exception (SQLSTATE class 22, such as a malformed inet) or an integrity
// constraint violation (class 23, such as the country_code check). Those fail
// the same way every time; everything else (connection loss, shutdown,
// conflicts, a missing table during a migration) may pass on a retry.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	class := pgErr.Code[:2]
	return class == "22" || class == "23"
}
