package api

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/store"
)

// Bounds of the analytics routes.
const (
	// maxSeriesWindow: a year, a leap one included.
	maxSeriesWindow = 366 * 24 * time.Hour
	// autoSeriesPoints is the most buckets step=auto makes.
	autoSeriesPoints = 500
	// maxSeriesPoints is the most buckets an explicit step may make.
	maxSeriesPoints = 10000
	// exportTimeout bounds one CSV export, query and writing together; it
	// replaces the server's write timeout for that answer.
	exportTimeout = 10 * time.Minute
	// exportFlushRows is how many CSV records are buffered between flushes.
	exportFlushRows = 1000
)

// seriesSteps are the steps /series accepts besides auto, smallest first.
var seriesSteps = []struct {
	name string
	d    time.Duration
}{{"1m", time.Minute}, {"5m", 5 * time.Minute}, {"1h", time.Hour}, {"1d", 24 * time.Hour}}

// boolQueryParam reads query parameter name as true or false; def when absent or
// empty. Errors: 400 invalid_<name>.
func boolQueryParam(c echo.Context, name string, def bool) (bool, error) {
	switch c.QueryParam(name) {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, invalid(name, "must be true or false")
}

// handleStageBreakdown: GET /v1/stages/{stage}/breakdown?by=&days=7&include_bots=false,
// the sessions of the stats' window grouped by country, device, os or
// browser: the 50 keys with most views, then "other" for the rest.
func (s *server) handleStageBreakdown() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, days, bots, err := stageWindow(c)
		if err != nil {
			return err
		}
		by := c.QueryParam("by")
		if !store.ValidBreakdown(by) {
			return invalid("by", "must be country, device, os or browser")
		}
		now := s.now().UTC()
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		rows, err := s.ReadDB.Breakdown(ctx, arn, by, days, now, bots)
		if err != nil {
			return s.dbError(c, "breakdown", err)
		}
		if rows == nil {
			rows = []store.BreakdownRow{}
		}
		return c.JSON(http.StatusOK, map[string]any{"stage_arn": arn, "by": by, "days": days, "include_bots": bots,
			"from": now.AddDate(0, 0, -days), "to": now, "rows": rows})
	}
}

// seriesStep picks the step of /series: a named one, or for auto the
// smallest that makes at most autoSeriesPoints buckets of [from, to).
// Errors: 400 invalid_step.
func seriesStep(raw string, from, to time.Time) (string, time.Duration, error) {
	if raw == "" || raw == "auto" {
		for _, st := range seriesSteps {
			if buckets(from, to, st.d) <= autoSeriesPoints {
				return st.name, st.d, nil
			}
		}
		last := seriesSteps[len(seriesSteps)-1]
		return last.name, last.d, nil
	}
	for _, st := range seriesSteps {
		if st.name == raw {
			if buckets(from, to, st.d) > maxSeriesPoints {
				return "", 0, invalid("step", fmt.Sprintf("%s makes more than %d points over this window; use a larger step or auto", raw, maxSeriesPoints))
			}
			return st.name, st.d, nil
		}
	}
	return "", 0, invalid("step", "must be auto, 1m, 5m, 1h or 1d")
}

// buckets counts the epoch-aligned buckets of width d that [from, to)
// touches.
func buckets(from, to time.Time, d time.Duration) int64 {
	if !to.After(from) {
		return 0
	}
	first := from.Truncate(d) // Truncate aligns to the zero time, which 1970 is a multiple of for these steps
	return int64(to.Sub(first)+d-1) / int64(d)
}

// handleStageSeries: GET /v1/stages/{stage}/series?from=&to=&step=auto, the
// snapshot rows of [from, to) in buckets: avg_viewers and peak_viewers per
// bucket. Defaults: to = now, from = to - 24h; at most 366 days.
func (s *server) handleStageSeries() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, err := stageParam(c)
		if err != nil {
			return err
		}
		from, to, err := windowQuery(c, s.now().UTC(), maxSeriesWindow, "366 days")
		if err != nil {
			return err
		}
		name, step, err := seriesStep(c.QueryParam("step"), from, to)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		points, err := s.ReadDB.Series(ctx, arn, from, to, step)
		if err != nil {
			return s.dbError(c, "series", err)
		}
		if points == nil {
			points = []store.SeriesPoint{}
		}
		return c.JSON(http.StatusOK, map[string]any{"stage_arn": arn, "from": from, "to": to, "step": name, "points": points})
	}
}

// windowQuery reads from and to (RFC 3339) for a window ending by default at now
// and 24 hours long, at most max (said as maxText) and not reversed.
// Errors: 400 invalid_from, invalid_to, invalid_window.
func windowQuery(c echo.Context, now time.Time, max time.Duration, maxText string) (time.Time, time.Time, error) {
	to, err := timeQuery(c, "to", now)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	from, err := timeQuery(c, "from", to.Add(-defaultWindow))
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if from.After(to) {
		return time.Time{}, time.Time{}, invalid("window", "from must not be after to")
	}
	if max > 0 && to.Sub(from) > max {
		return time.Time{}, time.Time{}, invalid("window", "from and to must be at most "+maxText+" apart")
	}
	return from, to, nil
}

// handleStageSessionsCSV: GET /v1/stages/{stage}/sessions.csv?from=&to=,
// every session of the stage (bots too) that joined in [from, to), in join
// order, as CSV. Defaults: to = now, from = to - 24h; any length.
func (s *server) handleStageSessionsCSV() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, err := stageParam(c)
		if err != nil {
			return err
		}
		from, to, err := windowQuery(c, s.now().UTC(), 0, "")
		if err != nil {
			return err
		}
		name := "sessions-" + arn[strings.LastIndexByte(arn, '/')+1:] + ".csv"
		return s.exportCSV(c, name, func(ctx context.Context, x store.Export) error {
			return s.ReadDB.ExportStageSessions(ctx, arn, from, to, x)
		})
	}
}

// handleUserHistoryCSV: GET /v1/users/{user}/history.csv, every session of
// the user (bots too), newest first, as CSV.
func (s *server) handleUserHistoryCSV() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, err := userParam(c)
		if err != nil {
			return err
		}
		return s.exportCSV(c, "history.csv", func(ctx context.Context, x store.Export) error {
			return s.ReadDB.ExportUserSessions(ctx, user, x)
		})
	}
}

// exportCSV answers with the rows run streams: RFC 4180 CSV (CRLF line
// ends, quotes where needed), a header row of store.ExportColumns, as an
// attachment named filename. Rows go out as PostgreSQL sends them, flushed
// every exportFlushRows, so memory stays flat whatever the size. A failure
// before the first byte is the usual JSON error; after it the answer is cut
// short (the client sees a truncated body, never a complete-looking one:
// the last record lacks its line end or the chunked body its terminator).
func (s *server) exportCSV(c echo.Context, filename string, run func(context.Context, store.Export) error) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), exportTimeout)
	defer cancel()
	res := c.Response()
	rc := http.NewResponseController(res.Writer)           // not res: echo's Flush panics where flushing is unsupported
	_ = rc.SetWriteDeadline(time.Now().Add(exportTimeout)) // ErrNotSupported under tests' recorders
	w := csv.NewWriter(res)
	w.UseCRLF = true
	n := 0
	err := run(ctx, store.Export{
		Start: func() error {
			h := res.Header()
			h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
			h.Set(echo.HeaderContentDisposition, `attachment; filename="`+filename+`"; filename*=UTF-8''`+url.PathEscape(filename))
			h.Set("Cache-Control", "no-store")
			res.WriteHeader(http.StatusOK)
			return w.Write(store.ExportColumns)
		},
		Row: func(fields []string) error {
			if err := w.Write(fields); err != nil {
				return err
			}
			if n++; n%exportFlushRows == 0 {
				w.Flush()
				if err := w.Error(); err != nil {
					return err
				}
				_ = rc.Flush()
			}
			return nil
		},
	})
	if err == nil {
		w.Flush()
		err = w.Error()
	}
	if err == nil {
		return nil
	}
	if !res.Committed {
		return s.dbError(c, "export", err)
	}
	if !errors.Is(err, context.Canceled) {
		s.Log.Warn("export cut short", "path", c.Path(), "rows", n, "err", err)
	}
	// Abort the connection so that the client cannot take the partial body
	// for a whole one.
	panic(http.ErrAbortHandler)
}
