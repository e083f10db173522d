package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// handleStages: GET /v1/stages, the stages with live state and their counts.
func (s *server) handleStages() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		defer cancel()
		stages, err := s.Stream.Stages(ctx, time.Time{})
		if err != nil {
			return s.redisError(c, "stages", err)
		}
		type stage struct {
			StageARN string `json:"stage_arn"`
			Viewers  int64  `json:"viewers"`
		}
		out := make([]stage, 0, len(stages))
		for _, st := range stages {
			out = append(out, stage{StageARN: st.Stage, Viewers: st.Viewers})
		}
		return c.JSON(http.StatusOK, map[string]any{"stages": out})
	}
}

// maxListed bounds the users listed by the viewers route.
const maxListed = 1000

// handleStageViewers: GET /v1/stages/{stage}/viewers, the live count and the
// present users, most recently seen first (at most 1000 listed).
func (s *server) handleStageViewers() echo.HandlerFunc {
	return func(c echo.Context) error {
		stage, err := stageParam(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		defer cancel()
		n, err := s.Stream.Count(ctx, stage)
		if err != nil {
			return s.redisError(c, "count", err)
		}
		users, err := s.Stream.Present(ctx, stage, maxListed)
		if err != nil {
			return s.redisError(c, "present", err)
		}
		return c.JSON(http.StatusOK, map[string]any{"stage_arn": stage, "viewers": n, "users": users})
	}
}
