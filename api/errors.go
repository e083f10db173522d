package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// Error is an answer other than success: an HTTP status, a stable snake_case
// code clients switch on, and a message for people. Handlers return it; the
// error handler writes {"error":{"code":…,"message":…}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter, in seconds, is sent as Retry-After when above zero.
	RetryAfter int `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Errors with no request-specific detail.
var (
	errUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: "dependency_unavailable",
		Message: "a dependency is unavailable; nothing was recorded, retry later", RetryAfter: 1}
	errOutcomeUnknown = &Error{Status: http.StatusServiceUnavailable, Code: "outcome_unknown",
		Message: "Redis did not answer in time after the request reached it; it was recorded or not, never later: repeat it (a join continues the session, heartbeat and leave are repeat-safe)", RetryAfter: 1}
	errBackpressure = &Error{Status: http.StatusServiceUnavailable, Code: "backpressure",
		Message: "the event log is full while history catches up; nothing was recorded, retry later", RetryAfter: 5}
	errSessionNotFound = errorf(http.StatusNotFound, "session_not_found",
		"the session is unknown or expired; join again")
	errStageCollision = &Error{Status: http.StatusServiceUnavailable, Code: "stage_collision",
		Message: "another live stage of this stage's partition shares its key hash (a one-in-10^5 event at a million live stages); nothing was recorded, the join succeeds once that stage's viewers are gone", RetryAfter: 30}
	errStageMoving = &Error{Status: http.StatusServiceUnavailable, Code: "stage_moving",
		Message: "the stage is joining or leaving a group placed elsewhere; nothing was recorded, retry in a moment", RetryAfter: 1}
	errStageHasViewers = errorf(http.StatusConflict, "stage_has_viewers",
		"a stage with open sessions cannot join or leave a group (its live state would be split); wait until it is empty")
	errGroupNotFound = errorf(http.StatusNotFound, "group_not_found", "no group has this master")
	errGroupFull     = errorf(http.StatusConflict, "group_full", "no stage of the group has room for one more viewer")
	errStageFull     = errorf(http.StatusConflict, "stage_full",
		"the stage has reached its max_viewers; viewers already present are not affected")
	errUnauthorized  = errorf(http.StatusUnauthorized, "unauthorized", "a valid 'Authorization: Bearer <key>' header is required")
	errStageNotFound = errorf(http.StatusNotFound, "stage_not_found",
		"the stage is neither configured nor active")
	errUserNotFound = errorf(http.StatusNotFound, "user_not_found", "no profile and no session of this user")

	// Viewer tokens (token.go, tokens_route.go).
	errTokenRequired = errorf(http.StatusUnauthorized, "token_required",
		"this server requires a viewer token: send it in the body's token field or as 'Authorization: Bearer <token>'")
	errMintingDisabled = errorf(http.StatusNotFound, "token_minting_disabled",
		"this server mints no tokens: it has no VIEWER_TOKEN_SIGNING_KEY")
	errMintNeedsKeys = errorf(http.StatusUnauthorized, "unauthorized",
		"minting tokens needs an API key and this server has no API_KEYS configured")
)

// Viewer token errors with a detail: 401 invalid_token (malformed, bad
// signature, unknown key, refused alg, bad claims, not yet valid), 401
// token_expired, 403 token_mismatch (the body disagrees with the claims).
func invalidToken(msg string) *Error  { return errorf(http.StatusUnauthorized, "invalid_token", msg) }
func tokenExpired(msg string) *Error  { return errorf(http.StatusUnauthorized, "token_expired", msg) }
func tokenMismatch(msg string) *Error { return errorf(http.StatusForbidden, "token_mismatch", msg) }

// rateLimited is 429 rate_limited, to retry after d: whole seconds, rounded
// up, at least 1.
func rateLimited(d time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Message:    "too many requests; nothing was recorded, retry after Retry-After seconds",
		RetryAfter: max(1, int((d+time.Second-1)/time.Second))}
}

// statusCodes maps echo's own errors (routing, body limits) to codes.
var statusCodes = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "body_too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusTooManyRequests:       "too_many_requests",
	http.StatusServiceUnavailable:    "dependency_unavailable",
}

// errorHandler writes every error as the contract's JSON. Anything that is
// neither an *Error nor an echo error is a bug: it is logged and answered 500
// without detail.
func (s *server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var apiErr *Error
	var httpErr *echo.HTTPError
	switch {
	case errors.As(err, &apiErr):
	case errors.As(err, &httpErr):
		code, ok := statusCodes[httpErr.Code]
		if !ok {
			code = "error"
		}
		msg, _ := httpErr.Message.(string)
		if msg == "" {
			msg = http.StatusText(httpErr.Code)
		}
		apiErr = errorf(httpErr.Code, code, msg)
	default:
		s.Log.Error("internal error", "method", c.Request().Method, "path", c.Path(), "err", err)
		apiErr = errorf(http.StatusInternalServerError, "internal", "internal error")
	}
	if apiErr.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", itoa(apiErr.RetryAfter))
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(apiErr.Status)
		return
	}
	_ = c.JSON(apiErr.Status, map[string]*Error{"error": apiErr})
}
