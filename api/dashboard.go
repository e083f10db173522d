package api

import (
	"bytes"
	"embed"
	"fmt"
	"mime"
	"net/http"
	"path"
	"time"

	"github.com/labstack/echo/v4"
)

// dashboardFiles is the operators' page: plain HTML, CSS and JavaScript with
// uPlot vendored under vendor/uplot (MIT, its LICENSE beside it), so nothing
// is built at build time.
//
//go:embed dashboard
var dashboardFiles embed.FS

// dashboardAssets maps the names under /dashboard/ to the embedded files.
var dashboardAssets = map[string]string{
	"":                  "dashboard/index.html",
	"dashboard.js":      "dashboard/dashboard.js",
	"dashboard.css":     "dashboard/dashboard.css",
	"uPlot.iife.min.js": "dashboard/vendor/uplot/uPlot.iife.min.js",
	"uPlot.min.css":     "dashboard/vendor/uplot/uPlot.min.css",
	"uPlot.LICENSE":     "dashboard/vendor/uplot/LICENSE",
}

// handleDashboard: GET /dashboard (the page) and GET /dashboard/{asset} (its
// scripts and styles; 404 not_found for any other name). The page is open:
// it holds no data, and asks for an API key when the routes it reads need
// one.
func handleDashboard(c echo.Context) error {
	name, ok := dashboardAssets[c.Param("asset")]
	if !ok {
		return echo.ErrNotFound
	}
	data, err := dashboardFiles.ReadFile(name)
	if err != nil {
		return fmt.Errorf("dashboard asset %s: %w", name, err)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	h.Set(echo.HeaderContentType, ct)
	http.ServeContent(c.Response(), c.Request(), name, time.Time{}, bytes.NewReader(data))
	return nil
}
