-- Stage groups (issue 13): a stage may name its group's master, a stage
-- with is_master; the group of a master is the master plus every stage
-- naming it. No chains: a master has no master itself, which the API checks
-- under the rows' locks (store.PutStage). A master cannot be deleted while
-- stages name it (ON DELETE RESTRICT).

-- +goose Up
ALTER TABLE stages
    ADD COLUMN master_stage_arn text REFERENCES stages (stage_arn) ON DELETE RESTRICT
        CHECK (master_stage_arn <> stage_arn);
CREATE INDEX stages_master_idx ON stages (master_stage_arn) WHERE master_stage_arn IS NOT NULL;

-- +goose Down
DROP INDEX stages_master_idx;
ALTER TABLE stages DROP COLUMN master_stage_arn;
