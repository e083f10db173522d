package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Stage is the configuration of one stage.
type Stage struct {
	StageARN   string    `json:"stage_arn"`
	StageName  *string   `json:"stage_name"`
	IsMaster   bool      `json:"is_master"`
	MaxViewers *int      `json:"max_viewers"` // nil: no limit
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

const stageColumns = `stage_arn, stage_name, is_master, max_viewers, created_at, updated_at`

// GetStage returns the configuration of stage. Errors: ErrStageNotFound.
func (db *DB) GetStage(ctx context.Context, stage string) (Stage, error) {
	row := db.Pool.QueryRow(ctx, `SELECT `+stageColumns+` FROM stages WHERE stage_arn = $1`, stage)
	st, err := scanStage(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return Stage{}, ErrStageNotFound
	}
	if err != nil {
		return Stage{}, fmt.Errorf("get stage: %w", err)
	}
	return st, nil
}

// ListStages returns every configured stage, by ARN.
func (db *DB) ListStages(ctx context.Context) ([]Stage, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+stageColumns+` FROM stages ORDER BY stage_arn`)
	if err != nil {
		return nil, fmt.Errorf("list stages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stage, error) { return scanStage(r) })
	if err != nil {
		return nil, fmt.Errorf("list stages: %w", err)
	}
	return out, nil
}

const putStage = `
INSERT INTO stages (stage_arn, stage_name, is_master, max_viewers)
VALUES ($1, $2, $3, $4)
ON CONFLICT (stage_arn) DO UPDATE
   SET stage_name = EXCLUDED.stage_name, is_master = EXCLUDED.is_master,
       max_viewers = EXCLUDED.max_viewers, updated_at = now()
RETURNING ` + stageColumns + `, (xmax = 0) AS created`

// PutStage creates or replaces the configuration of st.StageARN (the times
// are ignored) and reports whether it was created. apply runs after the row is
// written and before the commit, while the row is locked: its error rolls the
// change back, so a configuration is only stored once apply (the live
// capacity) took it, and concurrent puts of one stage apply in commit order.
func (db *DB) PutStage(ctx context.Context, st Stage, apply func(Stage) error) (out Stage, created bool, err error) {
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx, putStage, st.StageARN, st.StageName, st.IsMaster, st.MaxViewers)
		if err := row.Scan(&out.StageARN, &out.StageName, &out.IsMaster, &out.MaxViewers, &out.CreatedAt, &out.UpdatedAt, &created); err != nil {
			return err
		}
		out.CreatedAt, out.UpdatedAt = out.CreatedAt.UTC(), out.UpdatedAt.UTC()
		return apply(out)
	})
	if err != nil {
		return Stage{}, false, fmt.Errorf("put stage: %w", err)
	}
	return out, created, nil
}

// DeleteStage removes the configuration of stage and reports whether there
// was one. apply runs before the commit whether or not there was (it clears
// the live capacity, which may outlive a row deleted earlier); its error rolls
// the delete back.
func (db *DB) DeleteStage(ctx context.Context, stage string, apply func() error) (deleted bool, err error) {
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM stages WHERE stage_arn = $1`, stage)
		if err != nil {
			return err
		}
		deleted = tag.RowsAffected() > 0
		return apply()
	})
	if err != nil {
		return false, fmt.Errorf("delete stage: %w", err)
	}
	return deleted, nil
}

func scanStage(row pgx.Row) (Stage, error) {
	var st Stage
	err := row.Scan(&st.StageARN, &st.StageName, &st.IsMaster, &st.MaxViewers, &st.CreatedAt, &st.UpdatedAt)
	st.CreatedAt, st.UpdatedAt = st.CreatedAt.UTC(), st.UpdatedAt.UTC()
	return st, err
}
