package api

import (
	"context"

	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/store"
)

// groupOf is the group a stage configuration puts the stage in, named by
// its master ("": none): a master is in its own group.
func groupOf(st *store.Stage) string {
	switch {
	case st == nil:
		return ""
	case st.MasterStageARN != nil:
		return *st.MasterStageARN
	case st.IsMaster:
		return st.StageARN
	}
	return ""
}

// applyStage makes Redis hold st's capacity and group (old: the
// configuration before, nil when there was none; st nil: deleted).
func (s *server) applyStage(ctx context.Context, arn string, old, st *store.Stage) error {
	rctx, cancel := context.WithTimeout(ctx, s.RedisTimeout)
	defer cancel()
	limit := 0
	if st != nil {
		limit = capacity(*st)
	}
	from, to := groupOf(old), groupOf(st)
	if from == to {
		return s.Stream.SetCapacity(rctx, arn, limit)
	}
	return s.Stream.Regroup(rctx, events.GroupChange{Stage: arn, From: from, To: to, Capacity: limit})
}

// groupRule is the rule an ErrInvalidGroup error names, without the
// wrapping.
func groupRule(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, store.ErrInvalidGroup.Error()+": "); i >= 0 {
		return msg[i+len(store.ErrInvalidGroup.Error())+2:]
	}
	return msg
}

type groupView struct {
	Master   string           `json:"master_stage_arn"`
	Viewers  int64            `json:"viewers"`
	Capacity *int             `json:"capacity"`
	Stages   []groupStageView `json:"stages"`
}

type groupStageView struct {
	StageARN   string `json:"stage_arn"`
	Viewers    int64  `json:"viewers"`
	MaxViewers *int   `json:"max_viewers"`
	Reserved   int64  `json:"reserved"`
}

// newGroupView: capacity is the sum of the stages' max_viewers, null when a
// stage has none.
func newGroupView(g events.GroupCount) groupView {
	v := groupView{Master: g.Master, Viewers: g.Viewers, Stages: []groupStageView{}}
	total, unlimited := 0, false
	for _, st := range g.Stages {
		sv := groupStageView{StageARN: st.Stage, Viewers: st.Viewers, Reserved: st.Reserved}
		if st.MaxViewers > 0 {
			m := st.MaxViewers
			sv.MaxViewers = &m
			total += m
		} else {
			unlimited = true
		}
		v.Stages = append(v.Stages, sv)
	}
	if !unlimited {
		v.Capacity = &total
	}
	return v
}

// handleGetGroup: GET /v1/groups/{master}, the group's live count (distinct
// users on any of its stages), capacity and stages, read from Redis in one
// atomic step.
func (s *server) handleGetGroup() echo.HandlerFunc {
	return func(c echo.Context) error {
		master, err := stageParam(c)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		defer cancel()
		g, err := s.Stream.GroupOf(rctx, master)
		if err != nil {
			return s.redisError(c, "group", err)
		}
		return c.JSON(http.StatusOK, newGroupView(g))
	}
}

type assignRequest struct {
	UserID string `json:"user_id"`
}

type assignResponse struct {
	StageARN   string     `json:"stage_arn"`
	Viewers    int64      `json:"viewers"`
	MaxViewers *int       `json:"max_viewers"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

// handleAssign: POST /v1/groups/{master}/assign, a seat for user_id on a
// stage of the group (events.Stream.Assign).
func (s *server) handleAssign() echo.HandlerFunc {
	return func(c echo.Context) error {
		master, err := stageParam(c)
		if err != nil {
			return err
		}
		var req assignRequest
		if err := bind(c, &req, false); err != nil {
			return err
		}
		if err := checkUser(req.UserID); err != nil {
			return err
		}
		seat, err := s.assign(c, master, req.UserID)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, newAssignResponse(seat))
	}
}

// assign runs the seat assignment of user in master's group, its errors
// answered as the contract says.
func (s *server) assign(c echo.Context, master, user string) (events.Seat, error) {
	rctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
	defer cancel()
	seat, err := s.Stream.Assign(rctx, master, user, s.SeatTTL)
	if err != nil {
		return seat, s.redisError(c, "assign", err)
	}
	return seat, nil
}

func newAssignResponse(seat events.Seat) assignResponse {
	r := assignResponse{StageARN: seat.Stage, Viewers: seat.Viewers}
	if seat.MaxViewers > 0 {
		m := seat.MaxViewers
		r.MaxViewers = &m
	}
	if !seat.ExpiresAt.IsZero() {
		r.ExpiresAt = &seat.ExpiresAt
	}
	return r
}
