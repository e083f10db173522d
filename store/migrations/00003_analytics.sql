-- Analytics (issue 12). The projector classifies each session's user agent
-- once, at its join: device_type, os and browser are merged first-non-null
-- like user_agent. NULL device_type: the join is not projected yet, or the
-- row predates this migration and `projector backfill-ua` has not reached it.
-- Bots are recorded and filtered out of stats and breakdowns by default.
--
-- The snapshot table's unique key becomes a unique index that also carries
-- the two counts, so a year of one stage's rows for /series is read by an
-- index-only scan; ON CONFLICT (stage_arn, snapshot_time) infers it as it
-- did the constraint.

-- +goose Up
ALTER TABLE viewer_sessions
    ADD COLUMN device_type text CHECK (device_type IN ('desktop', 'mobile', 'tablet', 'tv', 'bot', 'other')),
    ADD COLUMN os          text CHECK (length(os) <= 64),
    ADD COLUMN browser     text CHECK (length(browser) <= 64);

CREATE UNIQUE INDEX viewer_stats_snapshots_stage_time_idx
    ON viewer_stats_snapshots (stage_arn, snapshot_time) INCLUDE (viewer_count, peak_viewers);
ALTER TABLE viewer_stats_snapshots DROP CONSTRAINT viewer_stats_snapshots_stage_arn_snapshot_time_key;

-- +goose Down
ALTER TABLE viewer_stats_snapshots ADD CONSTRAINT viewer_stats_snapshots_stage_arn_snapshot_time_key UNIQUE (stage_arn, snapshot_time);
DROP INDEX viewer_stats_snapshots_stage_time_idx;
ALTER TABLE viewer_sessions DROP COLUMN browser, DROP COLUMN os, DROP COLUMN device_type;
