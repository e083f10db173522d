package api

import (
	"bytes"
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// dashboardFiles is the operators' page: plain HTML, CSS and JavaScript with
// uPlot vendored under vendor/uplot (MIT, its LICENSE beside it), so nothing
// is built at build time.
//
//go:embed dashboard
var dashboardFiles embed.FS

// handleDashboard: GET /dashboard (the page) and GET /dashboard/* (its
// assets). The page is open: it holds no data, and asks for an API key when
// the routes it reads need one.
func handleDashboard(c echo.Context) error {
	r := c.Request()
	name := strings.TrimPrefix(r.URL.Path, "/dashboard")
	if name == "" || name == "/" {
		name = "/index.html"
	}
	if strings.HasSuffix(name, "/") {
		return echo.ErrNotFound
	}
	data, err := fs.ReadFile(dashboardFiles, "dashboard"+name)
	if err != nil {
		return echo.ErrNotFound
	}
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		h.Set(echo.HeaderContentType, ct)
	}
	http.ServeContent(c.Response(), r, name, time.Time{}, bytes.NewReader(data))
	return nil
}
