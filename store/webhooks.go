package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Outbox is the durable queue of webhook deliveries (table
// webhook_deliveries, migration 00004): one row per event and URL, claimed
// by dispatchers, marked delivered, failed or given up.
type Outbox struct {
	db *DB
}

// Outbox returns the webhook outbox of db.
func (db *DB) Outbox() *Outbox { return &Outbox{db: db} }

// WebhookEvent is one event to deliver to every URL it is enqueued for.
type WebhookEvent struct {
	ID        string    // idempotency id, the same for every URL and retry
	Type      string    // stage.live, group.scale_up, …
	CreatedAt time.Time // when it happened; the retry deadline counts from it
	Payload   []byte    // the JSON body sent
}

// WebhookDelivery is one row of the outbox: a claimed delivery, or one read
// back by Deliveries.
type WebhookDelivery struct {
	ID, URL, Type string
	Payload       []byte
	CreatedAt     time.Time
	// Attempts started, the claimed one included; MarkFailed uses it to
	// tell its claim from a later one.
	Attempts      int
	NextAttemptAt time.Time
	DeliveredAt   time.Time // zero while not delivered
	GivenUpAt     time.Time // zero while not given up
	LastError     string
}

const enqueueSQL = `
INSERT INTO webhook_deliveries (id, url, type, payload, created_at, next_attempt_at)
SELECT $1, u, $2, $3::jsonb, $4, LEAST($4, now()) FROM unnest($5::text[]) AS u
ON CONFLICT (id, url) DO NOTHING`

// Enqueue adds one delivery of ev per URL in urls, due at once (at
// ev.CreatedAt, or now when that is later), in one
// statement (so all or none), and returns how many it added: an event whose
// id is already enqueued for a URL is not enqueued for it twice. Errors:
// the database's own (a payload that is not JSON among them).
func (o *Outbox) Enqueue(ctx context.Context, ev WebhookEvent, urls []string) (int64, error) {
	if len(urls) == 0 {
		return 0, nil
	}
	tag, err := o.db.Pool.Exec(ctx, enqueueSQL, ev.ID, ev.Type, string(ev.Payload), ev.CreatedAt, urls)
	if err != nil {
		return 0, fmt.Errorf("enqueue webhook %s: %w", ev.ID, err)
	}
	return tag.RowsAffected(), nil
}

// claimSQL locks up to $2 due rows, skipping rows another claim holds, and
// pushes them a lease ($3 ms) into the future in the same statement: once it
// commits no other claim sees them due until the lease ends, and a dispatcher
// that dies mid-delivery leaves them to be claimed again then.
const claimSQL = `
WITH due AS (
    SELECT id, url FROM webhook_deliveries
    WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= $1
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
UPDATE webhook_deliveries w
SET attempts = w.attempts + 1, next_attempt_at = $1::timestamptz + $3::bigint * interval '1 millisecond'
FROM due WHERE w.id = due.id AND w.url = due.url
RETURNING ` + deliveryColumns

const deliveryColumns = `w.id, w.url, w.type, w.payload::text, w.created_at, w.attempts, w.next_attempt_at,
    w.delivered_at, w.given_up_at, w.last_error`

// ClaimDue claims up to limit deliveries due at now, oldest due first, for
// lease: until now+lease no other claim returns them. Several dispatchers
// (in one process or many) never claim one row at the same time. Errors: the
// database's own.
func (o *Outbox) ClaimDue(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]WebhookDelivery, error) {
	rows, err := o.db.Pool.Query(ctx, claimSQL, now, limit, lease.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("claim webhooks: %w", err)
	}
	out, err := scanDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("claim webhooks: %w", err)
	}
	return out, nil
}

const markDeliveredSQL = `
UPDATE webhook_deliveries SET delivered_at = $3, given_up_at = NULL, last_error = NULL
WHERE id = $1 AND url = $2 AND delivered_at IS NULL`

// MarkDelivered records that d reached its URL at at: it is never claimed
// again. Errors: the database's own.
func (o *Outbox) MarkDelivered(ctx context.Context, d WebhookDelivery, at time.Time) error {
	if _, err := o.db.Pool.Exec(ctx, markDeliveredSQL, d.ID, d.URL, at); err != nil {
		return fmt.Errorf("mark webhook %s delivered: %w", d.ID, err)
	}
	return nil
}

// markFailedSQL: $3 fences the update to the claim that made the attempt;
// $5 now, $6 the next attempt wanted, $7 the retry period in ms. The next
// attempt is at the latest at the deadline, so the last one is made there;
// a failure at or after the deadline gives up.
const markFailedSQL = `
UPDATE webhook_deliveries SET
    last_error = left($4, 1024),
    given_up_at = CASE WHEN $5::timestamptz >= created_at + $7::bigint * interval '1 millisecond' THEN $5::timestamptz END,
    next_attempt_at = LEAST($6::timestamptz, created_at + $7::bigint * interval '1 millisecond')
WHERE id = $1 AND url = $2 AND attempts = $3 AND delivered_at IS NULL AND given_up_at IS NULL
RETURNING given_up_at IS NOT NULL`

// MarkFailed records that the attempt claimed as d failed at now with
// reason, and schedules the next one at next, or at the deadline
// (d.CreatedAt + retryFor) when next is later. An attempt failed at or after
// the deadline gives the delivery up (givenUp true): it is never claimed
// again. A row claimed again since d (its lease ran out) is left alone.
// Errors: the database's own.
func (o *Outbox) MarkFailed(ctx context.Context, d WebhookDelivery, now, next time.Time, retryFor time.Duration, reason string) (givenUp bool, err error) {
	err = o.db.Pool.QueryRow(ctx, markFailedSQL, d.ID, d.URL, d.Attempts, reason, now, next, retryFor.Milliseconds()).Scan(&givenUp)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mark webhook %s failed: %w", d.ID, err)
	}
	return givenUp, nil
}

const dueSQL = `
SELECT count(*) FROM webhook_deliveries
WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= $1`

// Due counts the deliveries due at now and not claimed. Errors: the
// database's own.
func (o *Outbox) Due(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	if err := o.db.Pool.QueryRow(ctx, dueSQL, now).Scan(&n); err != nil {
		return 0, fmt.Errorf("count due webhooks: %w", err)
	}
	return n, nil
}

// Enqueued returns which of ids have been enqueued (for any URL) and not
// pruned. Errors: the database's own.
func (o *Outbox) Enqueued(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := o.db.Pool.Query(ctx, `SELECT DISTINCT id FROM webhook_deliveries WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("enqueued webhooks: %w", err)
	}
	ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("enqueued webhooks: %w", err)
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// Deliveries returns the rows of event id, one per URL, by URL. Errors: the
// database's own.
func (o *Outbox) Deliveries(ctx context.Context, id string) ([]WebhookDelivery, error) {
	rows, err := o.db.Pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries w WHERE id = $1 ORDER BY url`, id)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", id, err)
	}
	out, err := scanDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", id, err)
	}
	return out, nil
}

// The partial index on the finished rows serves this only with its
// predicate repeated.
const pruneWebhooksSQL = `
DELETE FROM webhook_deliveries WHERE ctid IN (
    SELECT ctid FROM webhook_deliveries
    WHERE (delivered_at IS NOT NULL OR given_up_at IS NOT NULL) AND COALESCE(delivered_at, given_up_at) < $1
    LIMIT $2)`

// PruneWebhooks deletes deliveries delivered or given up before before,
// batch rows per statement (DefaultDeleteBatch when batch <= 0), and returns
// how many it deleted. Rows still to deliver are never deleted. Errors: the
// database's own, with what was deleted so far.
func (o *Outbox) PruneWebhooks(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := o.db.deleteInBatches(ctx, pruneWebhooksSQL, before, batch)
	if err != nil {
		return n, fmt.Errorf("prune webhooks: %w", err)
	}
	return n, nil
}

func scanDeliveries(rows pgx.Rows) ([]WebhookDelivery, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (WebhookDelivery, error) {
		var d WebhookDelivery
		var payload string
		var delivered, givenUp *time.Time
		var lastErr *string
		if err := r.Scan(&d.ID, &d.URL, &d.Type, &payload, &d.CreatedAt, &d.Attempts, &d.NextAttemptAt,
			&delivered, &givenUp, &lastErr); err != nil {
			return d, err
		}
		d.Payload = []byte(payload)
		if delivered != nil {
			d.DeliveredAt = *delivered
		}
		if givenUp != nil {
			d.GivenUpAt = *givenUp
		}
		if lastErr != nil {
			d.LastError = *lastErr
		}
		return d, nil
	})
}
