package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/store"
)

// stageView is a stage as the read API shows it: its configuration, if any,
// and its live state. A stage that is active but not configured has
// configured=false and null configuration fields.
type stageView struct {
	StageARN     string     `json:"stage_arn"`
	Configured   bool       `json:"configured"`
	StageName    *string    `json:"stage_name"`
	IsMaster     bool       `json:"is_master"`
	MaxViewers   *int       `json:"max_viewers"`
	MasterARN    *string    `json:"master_stage_arn"`
	CreatedAt    *time.Time `json:"created_at"`
	UpdatedAt    *time.Time `json:"updated_at"`
	Viewers      int64      `json:"viewers"`
	LastActivity *time.Time `json:"last_activity"`
}

func newStageView(arn string, cfg *store.Stage, live *events.StageCount) stageView {
	v := stageView{StageARN: arn}
	if cfg != nil {
		v.Configured, v.StageName, v.IsMaster, v.MaxViewers = true, cfg.StageName, cfg.IsMaster, cfg.MaxViewers
		v.MasterARN = cfg.MasterStageARN
		v.CreatedAt, v.UpdatedAt = &cfg.CreatedAt, &cfg.UpdatedAt
	}
	if live != nil {
		v.Viewers = live.Viewers
		if !live.LastActivity.IsZero() {
			v.LastActivity = &live.LastActivity
		}
	}
	return v
}

// handleStages: GET /v1/stages, every stage configured or active, by ARN,
// with its live count. With the read API off, the active stages only and no
// configuration fields.
func (s *server) handleStages() echo.HandlerFunc {
	return func(c echo.Context) error {
		rctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		defer cancel()
		live, err := s.Stream.Stages(rctx, time.Time{})
		if err != nil {
			return s.redisError(c, "stages", err)
		}
		if s.ReadDB == nil {
			// Stages lists partition after partition, each by activity:
			// the contract is one array by ARN, empty rather than null.
			if live == nil {
				live = []events.StageCount{}
			}
			sort.Slice(live, func(i, j int) bool { return live[i].Stage < live[j].Stage })
			return c.JSON(http.StatusOK, map[string]any{"stages": live})
		}
		dctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		configured, err := s.ReadDB.ListStages(dctx)
		if err != nil {
			return s.dbError(c, "list stages", err)
		}
		byARN := map[string]*stageView{}
		for i := range configured {
			v := newStageView(configured[i].StageARN, &configured[i], nil)
			byARN[v.StageARN] = &v
		}
		for i := range live {
			v, ok := byARN[live[i].Stage]
			if !ok {
				nv := newStageView(live[i].Stage, nil, nil)
				v = &nv
				byARN[v.StageARN] = v
			}
			v.Viewers, v.LastActivity = live[i].Viewers, &live[i].LastActivity
		}
		out := make([]*stageView, 0, len(byARN))
		for _, v := range byARN {
			out = append(out, v)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].StageARN < out[j].StageARN })
		return c.JSON(http.StatusOK, map[string]any{"stages": out})
	}
}

// handleGetStage: GET /v1/stages/{stage}, its configuration and live count.
// An active stage without configuration answers configured=false; a stage
// neither configured nor active is 404 stage_not_found.
func (s *server) handleGetStage() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, err := stageParam(c)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		defer cancel()
		live, active, err := s.Stream.Active(rctx, arn)
		if err != nil {
			return s.redisError(c, "stage", err)
		}
		dctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		cfg, err := s.ReadDB.GetStage(dctx, arn)
		switch {
		case errors.Is(err, store.ErrStageNotFound) && active:
			return c.JSON(http.StatusOK, newStageView(arn, nil, &live))
		case err != nil:
			return s.dbError(c, "get stage", err)
		}
		return c.JSON(http.StatusOK, newStageView(arn, &cfg, &live))
	}
}

type stageRequest struct {
	StageName  *string `json:"stage_name"`
	IsMaster   bool    `json:"is_master"`
	MaxViewers *int    `json:"max_viewers"`
	// MasterStageARN names the master of the stage's group (null: none).
	MasterStageARN *string `json:"master_stage_arn"`
}

// maxStageViewers is the IVS real-time subscriber ceiling.
const maxStageViewers = 25000

// handlePutStage: PUT /v1/stages/{stage}, creates (201) or replaces (200) the
// configuration; an absent field takes its default (no name, not master, no
// limit). The capacity reaches Redis while the row is locked and before it
// commits, so from the answer on joins enforce max_viewers atomically and
// concurrent puts apply in commit order. A Redis failure rolls the row back
// (503, nothing changed); a commit that fails after the capacity was set
// leaves it in Redis until the client retries or ingest's start-up sync.
func (s *server) handlePutStage() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, err := stageParam(c)
		if err != nil {
			return err
		}
		var req stageRequest
		if err := bind(c, &req, false); err != nil {
			return err
		}
		name, err := checkText("stage_name", req.StageName, 100)
		if err != nil {
			return err
		}
		if m := req.MaxViewers; m != nil && (*m < 1 || *m > maxStageViewers) {
			return invalid("max_viewers", fmt.Sprintf("must be from 1 to %d, or null for no limit", maxStageViewers))
		}
		if m := req.MasterStageARN; m != nil {
			if err := checkStage(*m); err != nil {
				return invalid("master_stage_arn", "must be a stage ARN, or null")
			}
			if *m == arn {
				return errorf(http.StatusConflict, "invalid_group", "a stage cannot be its own master")
			}
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		var live events.StageCount
		want := store.Stage{StageARN: arn, StageName: name, IsMaster: req.IsMaster, MaxViewers: req.MaxViewers, MasterStageARN: req.MasterStageARN}
		st, created, err := s.WriteDB.PutStage(ctx, want,
			func(old *store.Stage, st store.Stage) error {
				if err := s.applyStage(ctx, arn, old, &st); err != nil {
					return err
				}
				rctx, cancel := context.WithTimeout(ctx, s.RedisTimeout)
				defer cancel()
				live, _, err = s.Stream.Active(rctx, arn)
				return err
			})
		if err != nil {
			return s.dbError(c, "put stage", err)
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		return c.JSON(status, newStageView(arn, &st, &live))
	}
}

// handleDeleteStage: DELETE /v1/stages/{stage}, removes the configuration and
// the capacity (204); 404 stage_not_found when there was no configuration
// (a stray capacity is cleared all the same).
func (s *server) handleDeleteStage() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, err := stageParam(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		deleted, err := s.WriteDB.DeleteStage(ctx, arn, func(old *store.Stage) error {
			return s.applyStage(ctx, arn, old, nil)
		})
		if err != nil {
			return s.dbError(c, "delete stage", err)
		}
		if !deleted {
			return errStageNotFound
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// SyncStages makes the groups and capacities joins check in Redis those of
// the stage configuration in db: it writes every group (events.SyncGroups),
// sets every configured max_viewers and clears any capacity without a
// configured limit. Ingest runs it at start, so a Redis that lost its
// state, or a change that reached only one side, is repaired.
func SyncStages(ctx context.Context, db *store.DB, stream *events.Stream) error {
	stages, err := db.ListStages(ctx)
	if err != nil {
		return fmt.Errorf("sync capacities: %w", err)
	}
	groups := map[string][]string{}
	for _, st := range stages {
		if g := groupOf(&st); g != "" {
			groups[g] = append(groups[g], st.StageARN)
		}
	}
	if err := stream.SyncGroups(ctx, groups); err != nil {
		return err
	}
	have, err := stream.Capacities(ctx)
	if err != nil {
		return fmt.Errorf("sync capacities: %w", err)
	}
	for _, st := range stages {
		if want := capacity(st); have[st.StageARN] != want {
			if err := stream.SetCapacity(ctx, st.StageARN, want); err != nil {
				return fmt.Errorf("sync capacities: %w", err)
			}
		}
		delete(have, st.StageARN)
	}
	for arn := range have {
		if err := stream.SetCapacity(ctx, arn, 0); err != nil {
			return fmt.Errorf("sync capacities: %w", err)
		}
	}
	return nil
}

// capacity is st's limit for Stream.SetCapacity: 0 for none.
func capacity(st store.Stage) int {
	if st.MaxViewers == nil {
		return 0
	}
	return *st.MaxViewers
}
