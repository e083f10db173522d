-- ViewPulse history schema. Every time is timestamptz; every column the
-- projector writes is merged order-free (see store's merge statement).

-- +goose Up
CREATE TABLE stages (
    stage_arn   text PRIMARY KEY CHECK (length(stage_arn) <= 128),
    stage_name  text CHECK (length(stage_name) <= 100),
    is_master   boolean NOT NULL DEFAULT false,
    -- NULL: no capacity limit. 25,000 is the IVS real-time subscriber ceiling.
    max_viewers integer CHECK (max_viewers BETWEEN 1 AND 25000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stages_is_master_idx ON stages (is_master) WHERE is_master;

CREATE TABLE users (
    user_id    text PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 128),
    username   text CHECK (length(username) <= 50),
    email      text CHECK (length(email) <= 254),
    -- the first event seen of this user (LEAST over events), not insert time,
    -- so a replay reproduces it.
    created_at timestamptz NOT NULL
);

CREATE TABLE viewer_sessions (
    session_id     text PRIMARY KEY,
    user_id        text NOT NULL,
    stage_arn      text NOT NULL,
    participant_id text,
    -- NULL only while a heartbeat or leave of the session has been projected
    -- before its join (several projectors, any order).
    joined_at      timestamptz,
    last_seen_at   timestamptz NOT NULL,
    left_at        timestamptz,
    end_reason     text CHECK (end_reason IN ('leave', 'timeout')),
    watch_duration_seconds integer GENERATED ALWAYS AS
        (floor(extract(epoch FROM (left_at - joined_at)))::integer) STORED,
    user_agent     text,
    ip_address     inet,
    country_code   text CHECK (country_code ~ '^[A-Z]{2}$')
);
CREATE INDEX viewer_sessions_user_joined_idx ON viewer_sessions (user_id, joined_at DESC, session_id DESC);
CREATE INDEX viewer_sessions_stage_joined_idx ON viewer_sessions (stage_arn, joined_at);
CREATE INDEX viewer_sessions_joined_idx ON viewer_sessions (joined_at);
CREATE INDEX viewer_sessions_open_idx ON viewer_sessions (stage_arn) WHERE left_at IS NULL;

CREATE TABLE viewer_stats_snapshots (
    stage_arn     text NOT NULL,
    snapshot_time timestamptz NOT NULL,
    viewer_count  integer NOT NULL CHECK (viewer_count >= 0),
    peak_viewers  integer NOT NULL CHECK (peak_viewers >= viewer_count),
    UNIQUE (stage_arn, snapshot_time)
);
CREATE INDEX viewer_stats_snapshots_time_idx ON viewer_stats_snapshots (snapshot_time);

-- +goose Down
DROP TABLE viewer_stats_snapshots;
DROP TABLE viewer_sessions;
DROP TABLE users;
DROP TABLE stages;
