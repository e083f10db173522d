package api

import (
	"context"
	"net/http"
	"net/mail"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/store"
)

// Query bounds of the history routes.
const (
	maxStatsDays    = 365
	defaultWindow   = 24 * time.Hour
	maxWindow       = 31 * 24 * time.Hour
	maxHistoryLimit = 100
)

// handleStageStats: GET /v1/stages/{stage}/stats?days=7&include_bots=false,
// the stage's figures over the last days (1..365), bots' sessions left out
// unless include_bots=true. Open sessions count up to now (the percentiles
// leave them out); the peak comes from the snapshot rows, which count
// everyone present. An unknown stage has zero figures and peak_at null.
func (s *server) handleStageStats() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, days, bots, err := stageWindow(c)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		st, err := s.ReadDB.StageStats(ctx, arn, days, now, bots)
		if err != nil {
			return s.dbError(c, "stage stats", err)
		}
		return c.JSON(http.StatusOK, struct {
			StageARN string    `json:"stage_arn"`
			Days     int       `json:"days"`
			Bots     bool      `json:"include_bots"`
			From     time.Time `json:"from"`
			To       time.Time `json:"to"`
			store.StageStats
		}{arn, days, bots, now.AddDate(0, 0, -days), now, st})
	}
}

// stageWindow reads what the stats and breakdown routes share: the {stage}
// path parameter, days (1..365, default 7) and include_bots (default
// false). Errors: 400 invalid_<name>.
func stageWindow(c echo.Context) (arn string, days int, bots bool, err error) {
	if arn, err = stageParam(c); err != nil {
		return "", 0, false, err
	}
	if days, err = intQuery(c, "days", 7, 1, maxStatsDays); err != nil {
		return "", 0, false, err
	}
	if bots, err = boolQueryParam(c, "include_bots", false); err != nil {
		return "", 0, false, err
	}
	return arn, days, bots, nil
}

// handleStageSnapshots: GET /v1/stages/{stage}/snapshots?from=&to=, the
// snapshot rows with from <= time <= to in time order. Defaults: to = now,
// from = to - 24h; the window is at most 31 days.
func (s *server) handleStageSnapshots() echo.HandlerFunc {
	return func(c echo.Context) error {
		arn, err := stageParam(c)
		if err != nil {
			return err
		}
		to, err := timeQuery(c, "to", s.now().UTC())
		if err != nil {
			return err
		}
		from, err := timeQuery(c, "from", to.Add(-defaultWindow))
		if err != nil {
			return err
		}
		if from.After(to) {
			return invalid("window", "from must not be after to")
		}
		if to.Sub(from) > maxWindow {
			return invalid("window", "from and to must be at most 31 days apart")
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		points, err := s.Snapshots(ctx, arn, from, to)
		if err != nil {
			return s.dbError(c, "snapshots", err)
		}
		if points == nil {
			points = []store.Snapshot{}
		}
		return c.JSON(http.StatusOK, map[string]any{"stage_arn": arn, "from": from, "to": to, "points": points})
	}
}

// handleUserHistory: GET /v1/users/{user}/history?limit=10&cursor=, the
// user's sessions newest first; next_cursor, when present, fetches the next
// page. An unknown user has an empty history.
func (s *server) handleUserHistory() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, err := userParam(c)
		if err != nil {
			return err
		}
		limit, err := intQuery(c, "limit", 10, 1, maxHistoryLimit)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		h, err := s.ReadDB.UserHistory(ctx, user, limit, c.QueryParam("cursor"), s.now())
		if err != nil {
			return s.dbError(c, "user history", err)
		}
		if h.Sessions == nil {
			h.Sessions = []store.Session{}
		}
		return c.JSON(http.StatusOK, struct {
			UserID string `json:"user_id"`
			store.History
		}{user, h})
	}
}

// handleGetUser: GET /v1/users/{user}, the profile and totals; 404
// user_not_found when there is neither a profile nor a session.
func (s *server) handleGetUser() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, err := userParam(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		u, err := s.ReadDB.User(ctx, user, s.now())
		if err != nil {
			return s.dbError(c, "get user", err)
		}
		return c.JSON(http.StatusOK, u)
	}
}

type userRequest struct {
	Username *string `json:"username"`
	Email    *string `json:"email"`
}

// handlePutUser: PUT /v1/users/{user}, sets username and email (absent or
// empty: none); 201 when the user was unknown, else 200, with the profile.
func (s *server) handlePutUser() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, err := userParam(c)
		if err != nil {
			return err
		}
		var req userRequest
		if err := bind(c, &req, false); err != nil {
			return err
		}
		username, err := checkText("username", req.Username, 50)
		if err != nil {
			return err
		}
		email, err := checkEmail(req.Email)
		if err != nil {
			return err
		}
		now := s.now()
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.DBTimeout)
		defer cancel()
		created, err := s.WriteDB.PutUser(ctx, user, username, email, now)
		if err != nil {
			return s.dbError(c, "put user", err)
		}
		u, err := s.WriteDB.User(ctx, user, now)
		if err != nil {
			return s.dbError(c, "get user", err)
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		return c.JSON(status, u)
	}
}

// checkEmail accepts none, or one bare address (no display name) of at most
// 254 bytes, all printable.
func checkEmail(v *string) (*string, error) {
	if v == nil || *v == "" {
		return nil, nil
	}
	addr, err := mail.ParseAddress(*v)
	if len(*v) > 254 || err != nil || addr.Address != *v || !printable(*v, 254) {
		return nil, invalid("email", "must be one address such as name@example.com, at most 254 characters")
	}
	return v, nil
}
