package api

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/phuslu/iploc"

	"github.com/viewpulse/viewpulse/events"
)

type joinRequest struct {
	StageARN      string `json:"stage_arn"`
	UserID        string `json:"user_id"`
	ParticipantID string `json:"participant_id"`
	// Token is the viewer token (VIEWER_AUTH=token; token.go).
	Token string `json:"token"`
}

type joinResponse struct {
	SessionID         string `json:"session_id"`
	Viewers           int64  `json:"viewers"`
	HeartbeatInterval int    `json:"heartbeat_interval_seconds"`
	Timeout           int    `json:"timeout_seconds"`
	Rejoined          bool   `json:"rejoined"`
}

type sessionRequest struct {
	SessionID string `json:"session_id"`
}

// handleJoin: POST /v1/viewers/join. The answer comes after the join event is
// in the stream and the viewer counted, in one Redis step.
func (s *server) handleJoin() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req joinRequest
		if err := bind(c, &req, false); err != nil {
			return err
		}
		r := c.Request()
		ip := c.RealIP()
		// Before the Redis budget starts: the first IPv6 lookup loads a table.
		country := s.country(r, ip)
		ctx, cancel := context.WithTimeout(r.Context(), s.RedisTimeout)
		defer cancel()
		if s.Tokens.Required {
			// A signature check costs far more than a limit check (ES384:
			// ~1 ms of CPU), so an address is charged before its token is
			// verified, and the token's user after.
			if err := s.limit(ctx, s.joinIPCheck(ip)); err != nil {
				return err
			}
			if err := s.authorizeJoin(c, &req); err != nil {
				return err // nothing appended
			}
			if err := s.limit(ctx, s.joinUserCheck(req.UserID)); err != nil {
				return err
			}
		} else {
			if err := firstErr(checkStage(req.StageARN), checkUser(req.UserID), checkParticipant(req.ParticipantID)); err != nil {
				return err
			}
			// Limits after validation, before the step: one limiter step.
			if err := s.limit(ctx, s.joinIPCheck(ip), s.joinUserCheck(req.UserID)); err != nil {
				return err
			}
		}
		at := s.now()
		res, err := s.Stream.Join(ctx, events.JoinRequest{
			Stage: req.StageARN, User: req.UserID, Participant: req.ParticipantID,
			UA: userAgent(r), IP: s.IPStorage.keep(ip), Country: country,
		})
		if err != nil {
			return s.redisError(c, "join", err)
		}
		s.stepRan(res.Session, at, res.Viewers, nil)
		if s.WriteBehind != nil {
			s.WriteBehind.Learn(res.Session, req.UserID, at, res.Viewers)
		}
		return joinAnswer(c, joinResponse{
			SessionID: res.Session, Viewers: res.Viewers, Rejoined: res.Rejoined,
			HeartbeatInterval: int(s.heartbeatEvery.Seconds()), Timeout: int(s.Stream.Timeout().Seconds()),
		})
	}
}

// handleHeartbeat: POST /v1/viewers/heartbeat. 404 session_not_found tells
// the player to join again. One sooner than half the interval after the
// session's last step here is answered from memory (heartbeat_skip.go).
func (s *server) handleHeartbeat() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req sessionRequest
		if err := bind(c, &req, false); err != nil {
			return err
		}
		if err := checkSession(req.SessionID); err != nil {
			return err
		}
		if n, ok := s.skipHeartbeat(req.SessionID); ok {
			return viewersAnswer(c, n)
		}
		if s.WriteBehind != nil {
			if n, ok := s.WriteBehind.Heartbeat(req.SessionID, s.now()); ok {
				return viewersAnswer(c, n)
			}
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		defer cancel()
		at := s.now()
		res, err := s.Stream.HeartbeatStep(ctx, req.SessionID)
		s.stepRan(req.SessionID, at, res.Viewers, err)
		if s.WriteBehind != nil {
			switch {
			case err == nil:
				s.WriteBehind.Learn(req.SessionID, res.User, at, res.Viewers)
			case errors.Is(err, events.ErrSessionNotFound):
				s.WriteBehind.Forget(req.SessionID)
			}
		}
		if err != nil {
			return s.redisError(c, "heartbeat", err)
		}
		return viewersAnswer(c, res.Viewers)
	}
}

// viewersAnswer writes {"viewers":n} as c.JSON would (the same bytes, a
// newline last), without its map and reflection: the heartbeat's answer.
func viewersAnswer(c echo.Context, n int64) error {
	var buf [48]byte
	b := append(buf[:0], `{"viewers":`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, "}\n"...)
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// joinAnswer writes r as c.JSON would (the same bytes, a newline last),
// without reflection. A session ID is ULID characters and never needs
// escaping; one that did would take c.JSON.
func joinAnswer(c echo.Context, r joinResponse) error {
	for i := 0; i < len(r.SessionID); i++ {
		if b := r.SessionID[i]; b < 0x20 || b >= 0x7f || b == '"' || b == '\\' || b == '<' || b == '>' || b == '&' {
			return c.JSON(http.StatusOK, r)
		}
	}
	var buf [192]byte
	b := append(buf[:0], `{"session_id":"`...)
	b = append(b, r.SessionID...)
	b = append(b, `","viewers":`...)
	b = strconv.AppendInt(b, r.Viewers, 10)
	b = append(b, `,"heartbeat_interval_seconds":`...)
	b = strconv.AppendInt(b, int64(r.HeartbeatInterval), 10)
	b = append(b, `,"timeout_seconds":`...)
	b = strconv.AppendInt(b, int64(r.Timeout), 10)
	b = append(b, `,"rejoined":`...)
	b = strconv.AppendBool(b, r.Rejoined)
	b = append(b, "}\n"...)
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// The leave's two answers, as c.JSON writes {"closed": …}.
var closedTrue, closedFalse = []byte(`{"closed":true}` + "\n"), []byte(`{"closed":false}` + "\n")

// handleLeave: POST /v1/viewers/leave, repeat-safe; also takes the text/plain
// body of navigator.sendBeacon.
func (s *server) handleLeave() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req sessionRequest
		if err := bind(c, &req, true); err != nil {
			return err
		}
		if err := checkSession(req.SessionID); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		defer cancel()
		at := s.now()
		closed, err := s.Stream.Leave(ctx, req.SessionID)
		s.sessionLeft(req.SessionID, at, closed)
		if s.WriteBehind != nil {
			s.WriteBehind.Forget(req.SessionID)
		}
		if err != nil {
			return s.redisError(c, "leave", err)
		}
		if closed {
			return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, closedTrue)
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, closedFalse)
	}
}

// isCountryCode reports whether v is two letters A-Z.
func isCountryCode(v string) bool {
	return len(v) == 2 && 'A' <= v[0] && v[0] <= 'Z' && 'A' <= v[1] && v[1] <= 'Z'
}

// country comes from a CDN header when a trusted proxy sent the request, else
// from the embedded IP-to-country table (phuslu/iploc), else empty.
func (s *server) country(r *http.Request, ip string) string {
	if peerTrusted(r, s.TrustedProxies) {
		for _, h := range []string{"CloudFront-Viewer-Country", "CF-IPCountry"} {
			if v := r.Header.Get(h); isCountryCode(v) && v != "XX" {
				return v
			}
		}
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	if c := iploc.IPCountry(addr.Unmap()); isCountryCode(c) && c != "ZZ" {
		return c
	}
	return ""
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// maxUA bounds the recorded User-Agent, in bytes.
const maxUA = 512

// userAgent is r's User-Agent as text PostgreSQL takes: a header may carry
// any byte above 0x7f, so invalid UTF-8 becomes U+FFFD (the agent is shown,
// never matched on), and the cut at maxUA bytes falls on a character
// boundary.
func userAgent(r *http.Request) string {
	ua := strings.ToValidUTF8(r.UserAgent(), "\uFFFD")
	if len(ua) <= maxUA {
		return ua
	}
	cut := maxUA
	for cut > 0 && !utf8.RuneStart(ua[cut]) {
		cut--
	}
	return ua[:cut]
}
