-- Heartbeats and closing events update a session row without touching an
-- indexed column; free space on each page lets PostgreSQL do those updates
-- in place (HOT), without new index entries. The partial index of open
-- sessions served no query.

-- +goose Up
ALTER TABLE viewer_sessions SET (fillfactor = 70);
DROP INDEX viewer_sessions_open_idx;

-- +goose Down
CREATE INDEX viewer_sessions_open_idx ON viewer_sessions (stage_arn) WHERE left_at IS NULL;
ALTER TABLE viewer_sessions RESET (fillfactor);
