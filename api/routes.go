package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/sdk"
)

// routes lists every route the server answers. openapi.json documents each
// one; a test keeps the two in step.
func (s *server) routes(e *echo.Echo) {
	m := newMetrics(s.Registry)
	e.Use(m.middleware)
	e.Use(corsPolicies(s.CORSOrigins)...) // before routing's OPTIONS answer (cors.go)

	// Operator probes: always open.
	e.GET("/healthz", echo.WrapHandler(http.HandlerFunc(ops.Healthz)))
	e.GET("/readyz", echo.WrapHandler(ops.Readyz(s.Ready, s.Log)))
	if s.Registry != nil {
		e.GET("/metrics", echo.WrapHandler(metricsHandler(s.Registry)))
	}

	// Player-facing write path: always open.
	e.POST("/v1/viewers/join", s.handleJoin())
	e.POST("/v1/viewers/heartbeat", s.handleHeartbeat())
	e.POST("/v1/viewers/leave", s.handleLeave())

	// The player SDK (sdk/dist, embedded): always open, cached for a year.
	e.GET("/sdk/v1/viewpulse.js", handleSDKFile("viewpulse.js", sdk.IIFE))
	e.GET("/sdk/v1/viewpulse.mjs", handleSDKFile("viewpulse.mjs", sdk.ESM))

	// Everything below needs "Authorization: Bearer <key>" when API_KEYS is set.
	key := s.requireKey
	e.GET("/openapi.json", handleOpenAPI, key)

	// Viewer tokens: needs an API key even when API_KEYS is empty.
	e.POST("/v1/tokens", s.handleMintToken(), s.requireMintKey, s.limitByAPIKey)

	// Live reads (Redis only).
	e.GET("/v1/stages", s.handleStages(), key)
	e.GET("/v1/stages/:stage/viewers", s.handleStageViewers(), key)
	// Operators' view: the live counts as Server-Sent Events (live_sse.go)
	// and the page that shows them (dashboard.go).
	e.GET(liveRoute, s.handleLive(), key)
	// Stage groups (groups.go): the live count, and seat assignment, which
	// like token minting needs an API key even when API_KEYS is empty.
	e.GET("/v1/groups/:stage", s.handleGetGroup(), key)
	e.POST("/v1/groups/:stage/assign", s.handleAssign(), s.requireMintKey)
	e.GET("/dashboard", handleDashboard)
	e.GET("/dashboard/:asset", handleDashboard)

	// READ_API=false (no PostgreSQL) leaves the rest out.
	if s.ReadDB != nil {
		// Stage configuration (writes on DATABASE_URL).
		e.GET("/v1/stages/:stage", s.handleGetStage(), key)
		e.PUT("/v1/stages/:stage", s.handlePutStage(), key)
		e.DELETE("/v1/stages/:stage", s.handleDeleteStage(), key)

		// History (reads on DATABASE_READ_URL).
		e.GET("/v1/stages/:stage/stats", s.handleStageStats(), key)
		e.GET("/v1/stages/:stage/snapshots", s.handleStageSnapshots(), key)
		e.GET("/v1/users/:user", s.handleGetUser(), key)
		e.PUT("/v1/users/:user", s.handlePutUser(), key)
		e.GET("/v1/users/:user/history", s.handleUserHistory(), key)

		// Analytics (api/analytics.go; reads on DATABASE_READ_URL).
		e.GET("/v1/stages/:stage/breakdown", s.handleStageBreakdown(), key)
		e.GET("/v1/stages/:stage/series", s.handleStageSeries(), key)
		e.GET("/v1/stages/:stage/sessions.csv", s.handleStageSessionsCSV(), key)
		e.GET("/v1/users/:user/history.csv", s.handleUserHistoryCSV(), key)
	}
	m.track(e)
}
