package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Stage is the configuration of one stage.
type Stage struct {
	StageARN   string  `json:"stage_arn"`
	StageName  *string `json:"stage_name"`
	IsMaster   bool    `json:"is_master"`
	MaxViewers *int    `json:"max_viewers"` // nil: no limit
	// MasterStageARN names the master of the stage's group; nil for a
	// master or a stage alone.
	MasterStageARN *string   `json:"master_stage_arn"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Master is the ARN the stage is placed by: its group's master, or itself.
func (st Stage) Master() string {
	if st.MasterStageARN != nil {
		return *st.MasterStageARN
	}
	return st.StageARN
}

// ErrInvalidGroup is wrapped by the error of a configuration change that
// would break a group's rules: a master that is not configured or not
// is_master, a chain (a master with a master, a stage with a master naming
// others), a master that stops being one or is deleted while stages name it.
var ErrInvalidGroup = errors.New("invalid group")

const stageColumns = `stage_arn, stage_name, is_master, max_viewers, master_stage_arn, created_at, updated_at`

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
INSERT INTO stages (stage_arn, stage_name, is_master, max_viewers, master_stage_arn)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (stage_arn) DO UPDATE
   SET stage_name = EXCLUDED.stage_name, is_master = EXCLUDED.is_master,
       max_viewers = EXCLUDED.max_viewers, master_stage_arn = EXCLUDED.master_stage_arn, updated_at = now()
RETURNING ` + stageColumns + `, (xmax = 0) AS created`

// PutStage creates or replaces the configuration of st.StageARN (the times
// are ignored) and reports whether it was created. apply runs after the row is
// written and before the commit, while the row is locked, with the row as it
// was before (nil: created): its error rolls the change back, so a
// configuration is only stored once apply (the live capacity and group) took
// it, and concurrent puts of one stage apply in commit order. The group rules
// are checked under the locks of the rows involved; breaking one is an error
// wrapping ErrInvalidGroup.
func (db *DB) PutStage(ctx context.Context, st Stage, apply func(old *Stage, st Stage) error) (out Stage, created bool, err error) {
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var old *Stage
		prev, err := scanStage(tx.QueryRow(ctx, `SELECT `+stageColumns+` FROM stages WHERE stage_arn = $1 FOR UPDATE`, st.StageARN))
		switch {
		case err == nil:
			old = &prev
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if err := checkGroup(ctx, tx, st); err != nil {
			return err
		}
		row := tx.QueryRow(ctx, putStage, st.StageARN, st.StageName, st.IsMaster, st.MaxViewers, st.MasterStageARN)
		if err := row.Scan(&out.StageARN, &out.StageName, &out.IsMaster, &out.MaxViewers, &out.MasterStageARN,
			&out.CreatedAt, &out.UpdatedAt, &created); err != nil {
			return err
		}
		out.CreatedAt, out.UpdatedAt = out.CreatedAt.UTC(), out.UpdatedAt.UTC()
		return apply(old, out)
	})
	if err != nil {
		return Stage{}, false, fmt.Errorf("put stage: %w", err)
	}
	return out, created, nil
}

// checkGroup enforces the group rules for st about to be written, locking
// its master's row (so that the master cannot stop being one meanwhile).
func checkGroup(ctx context.Context, tx pgx.Tx, st Stage) error {
	var children int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM stages WHERE master_stage_arn = $1`, st.StageARN).Scan(&children); err != nil {
		return err
	}
	if children > 0 && (!st.IsMaster || st.MasterStageARN != nil) {
		return fmt.Errorf("%w: %d stages name this stage as their master: it must stay is_master, without a master", ErrInvalidGroup, children)
	}
	if st.MasterStageARN == nil {
		return nil
	}
	if st.IsMaster {
		return fmt.Errorf("%w: a master (is_master) cannot have a master itself", ErrInvalidGroup)
	}
	var isMaster bool
	var masterOf *string
	err := tx.QueryRow(ctx, `SELECT is_master, master_stage_arn FROM stages WHERE stage_arn = $1 FOR SHARE`,
		*st.MasterStageARN).Scan(&isMaster, &masterOf)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: the master %s is not configured", ErrInvalidGroup, *st.MasterStageARN)
	case err != nil:
		return err
	case !isMaster || masterOf != nil:
		return fmt.Errorf("%w: %s is not a master (is_master true, no master of its own)", ErrInvalidGroup, *st.MasterStageARN)
	}
	return nil
}

// GroupStages returns the stages of master's group: the master (first) and
// every stage naming it, by ARN; empty when master is not a configured
// master.
func (db *DB) GroupStages(ctx context.Context, master string) ([]Stage, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+stageColumns+` FROM stages
		WHERE (stage_arn = $1 AND is_master) OR master_stage_arn = $1
		ORDER BY stage_arn <> $1, stage_arn`, master)
	if err != nil {
		return nil, fmt.Errorf("group stages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stage, error) { return scanStage(r) })
	if err != nil {
		return nil, fmt.Errorf("group stages: %w", err)
	}
	return out, nil
}

// DeleteStage removes the configuration of stage and reports whether there
// was one. apply runs before the commit whether or not there was (it clears
// the live capacity, which may outlive a row deleted earlier); its error rolls
// the delete back.
//
// apply gets the row deleted (nil: there was none). Deleting a master that
// stages still name is an error wrapping ErrInvalidGroup.
func (db *DB) DeleteStage(ctx context.Context, stage string, apply func(old *Stage) error) (deleted bool, err error) {
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var old *Stage
		prev, err := scanStage(tx.QueryRow(ctx, `DELETE FROM stages WHERE stage_arn = $1 RETURNING `+stageColumns, stage))
		switch {
		case err == nil:
			old, deleted = &prev, true
		case isForeignKeyViolation(err):
			return fmt.Errorf("%w: stages name %s as their master; give them another master or none first", ErrInvalidGroup, stage)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		return apply(old)
	})
	if err != nil {
		return false, fmt.Errorf("delete stage: %w", err)
	}
	return deleted, nil
}

func scanStage(row pgx.Row) (Stage, error) {
	var st Stage
	err := row.Scan(&st.StageARN, &st.StageName, &st.IsMaster, &st.MaxViewers, &st.MasterStageARN, &st.CreatedAt, &st.UpdatedAt)
	st.CreatedAt, st.UpdatedAt = st.CreatedAt.UTC(), st.UpdatedAt.UTC()
	return st, err
}

func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
