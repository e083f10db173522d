-- Webhook outbox (issue 13). One row per delivery of one event to one URL:
-- the snapshotter's dispatchers claim due rows (FOR UPDATE SKIP LOCKED, then
-- next_attempt_at pushed forward by a lease, so two never deliver a row at
-- once and one that dies mid-delivery leaves it to be retried), POST them and
-- mark them delivered, failed (retried later) or given up. id is the event's
-- idempotency id, the same for every URL of one event and on every retry;
-- enqueueing an event again is a no-op (ON CONFLICT (id, url) DO NOTHING).
-- payload is the whole body sent (jsonb renders it the same on every read).
-- Delivered and given-up rows are deleted 7 days after they ended.

-- +goose Up
CREATE TABLE webhook_deliveries (
    id              text NOT NULL CHECK (length(id) BETWEEN 1 AND 64),
    url             text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    type            text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    -- attempts started: counted when a row is claimed, so an attempt whose
    -- dispatcher died counts too
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text CHECK (length(last_error) <= 1024),
    given_up_at     timestamptz,
    PRIMARY KEY (id, url),
    CHECK (delivered_at IS NULL OR given_up_at IS NULL)
);
-- the rows still to deliver, by when they are due: what a claim reads
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
-- the finished rows, by when they finished: what pruning reads
CREATE INDEX webhook_deliveries_done_idx ON webhook_deliveries ((COALESCE(delivered_at, given_up_at)))
    WHERE delivered_at IS NOT NULL OR given_up_at IS NOT NULL;

-- +goose Down
DROP TABLE webhook_deliveries;
