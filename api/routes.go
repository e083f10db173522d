package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/internal/ops"
)

// routes lists every route the server answers.
func (s *server) routes(e *echo.Echo) {
	m := newMetrics(s.Registry)
	e.Use(m.middleware)

	e.GET("/healthz", echo.WrapHandler(http.HandlerFunc(ops.Healthz)))
	e.GET("/readyz", echo.WrapHandler(ops.Readyz(s.Ready)))
	if s.Registry != nil {
		e.GET("/metrics", echo.WrapHandler(metricsHandler(s.Registry)))
	}

	// Player-facing write path.
	e.POST("/v1/viewers/join", s.handleJoin())
	e.POST("/v1/viewers/heartbeat", s.handleHeartbeat())
	e.POST("/v1/viewers/leave", s.handleLeave())

	// Live reads.
	e.GET("/v1/stages", s.handleStages())
	e.GET("/v1/stages/:stage/viewers", s.handleStageViewers())
}
