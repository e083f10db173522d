package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"
)

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
