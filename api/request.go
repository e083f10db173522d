package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/oklog/ulid/v2"
	"github.com/viewpulse/viewpulse/events"
)

// maxBody bounds every request body; the largest legitimate one (a join) is
// well under 1 KiB.
const maxBody = 4 << 10

// isStageARN reports whether s is an IVS stage ARN as the contract writes
// it: ^arn:aws:ivs:[a-z0-9-]+:[0-9]+:stage/[a-zA-Z0-9-]+$ (the regexp lives
// on in the tests, which check this matcher against it). By hand, because
// every join and every signed token checks one and the regexp engine cost
// more than the rest of the validation.
func isStageARN(s string) bool {
	rest, ok := strings.CutPrefix(s, "arn:aws:ivs:")
	if !ok {
		return false
	}
	region, rest, ok := strings.Cut(rest, ":")
	if !ok || !allBytes(region, isRegionByte) {
		return false
	}
	account, rest, ok := strings.Cut(rest, ":")
	if !ok || !allBytes(account, isDigit) {
		return false
	}
	id, ok := strings.CutPrefix(rest, "stage/")
	return ok && allBytes(id, isIDByte)
}

// isParticipantID reports whether s matches ^[a-zA-Z0-9_-]{1,64}$.
func isParticipantID(s string) bool {
	return len(s) <= 64 && allBytes(s, func(b byte) bool { return isIDByte(b) || b == '_' })
}

// allBytes reports whether s is not empty and every byte of it is ok.
func allBytes(s string, ok func(byte) bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(b byte) bool      { return '0' <= b && b <= '9' }
func isRegionByte(b byte) bool { return 'a' <= b && b <= 'z' || isDigit(b) || b == '-' }
func isIDByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || isDigit(b) || b == '-'
}

const maxARN, maxUser = 128, 128

// bind decodes the JSON body of c into the struct v points to, strictly
// (decodeObject): exact key names, no repeated key, valid UTF-8, one object.
// JSON must come as application/json; allowPlain also takes text/plain, which
// navigator.sendBeacon sends. Unknown fields are ignored. Errors are *Error:
// 415, 413 or 400 invalid_json.
func bind(c echo.Context, v any, allowPlain bool) error {
	r := c.Request()
	if ct := r.Header.Get(echo.HeaderContentType); ct != echo.MIMEApplicationJSON && !mediaType(ct, allowPlain) {
		want := "application/json"
		if allowPlain {
			want += " or text/plain"
		}
		return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be "+want)
	}
	if n := r.ContentLength; n >= 0 && n <= maxBody {
		// The common case: a body of known length, read into a pooled
		// buffer (decodeObject copies what it keeps). A body shorter than
		// its Content-Length fails the read.
		buf := bodyBuffers.Get().(*[maxBody]byte)
		defer bodyBuffers.Put(buf)
		if _, err := io.ReadFull(r.Body, buf[:n]); err != nil {
			return errorf(http.StatusBadRequest, "invalid_json", "the body could not be read")
		}
		if err := decodeObject(buf[:n], v); err != nil {
			return err
		}
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errorf(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body must be at most %d bytes", maxBody))
		}
		return errorf(http.StatusBadRequest, "invalid_json", "the body could not be read")
	}
	if err := decodeObject(body, v); err != nil {
		return err
	}
	return nil
}

var bodyBuffers = sync.Pool{New: func() any { return new([maxBody]byte) }}

// mediaType reports whether Content-Type ct is application/json (with
// parameters, in any case), or text/plain when allowPlain.
func mediaType(ct string, allowPlain bool) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == echo.MIMEApplicationJSON || (allowPlain && mt == echo.MIMETextPlain))
}

func invalid(field, rule string) *Error {
	return errorf(http.StatusBadRequest, "invalid_"+field, field+" "+rule)
}

func checkStage(arn string) error {
	if arn == "" {
		return invalid("stage_arn", "is required")
	}
	if len(arn) > maxARN || !isStageARN(arn) {
		return invalid("stage_arn", "must be an IVS stage ARN (arn:aws:ivs:<region>:<account>:stage/<id>), at most 128 characters")
	}
	return nil
}

func checkUser(id string) error {
	if id == "" {
		return invalid("user_id", "is required")
	}
	if !printable(id, maxUser) {
		return invalid("user_id", "must be 1 to 128 printable characters")
	}
	return nil
}

// printable reports whether s is valid UTF-8 of at most max characters, all
// printable.
func printable(s string, max int) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func checkParticipant(id string) error {
	if id != "" && !isParticipantID(id) {
		return invalid("participant_id", "must be 1 to 64 of a-z, A-Z, 0-9, _ and -")
	}
	return nil
}

func checkSession(id string) error {
	if id == "" {
		return invalid("session_id", "is required")
	}
	// A bare ULID is a session ID of the layout before partitions: well
	// formed, and unknown (404, the client joins again), not a bad request.
	if _, err := events.ParseSessionID(id); err != nil && (len(id) != 26 || ulidErr(id) != nil) {
		return invalid("session_id", "must be a session_id returned by join")
	}
	return nil
}

// routeOnEscapedPath makes echo route every request on its escaped path, so
// that every path parameter reaches the handlers escaped and is unescaped
// there exactly once (pathParam). echo routes on URL.RawPath when it is set,
// else on the already unescaped URL.Path; Go sets RawPath only when the
// client's escaping differs from the default one, so without this a
// parameter would be unescaped once or twice depending on how it was
// written (a%2541b would read as aAb, 50%25off not at all).
func routeOnEscapedPath(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if u := c.Request().URL; u.RawPath == "" {
			u.RawPath = u.EscapedPath()
		}
		return next(c)
	}
}

// pathParam returns path parameter name, unescaped once; field names it in
// the error (400 invalid_<field>).
func pathParam(c echo.Context, name, field string) (string, error) {
	v, err := url.PathUnescape(c.Param(name))
	if err != nil {
		return "", invalid(field, "is not a valid URL-escaped path segment")
	}
	return v, nil
}

// stageParam returns the {stage} path parameter, unescaped and validated. The
// ARN holds a '/', so clients send it escaped (%2F).
func stageParam(c echo.Context) (string, error) {
	arn, err := pathParam(c, "stage", "stage_arn")
	if err != nil {
		return "", err
	}
	if err := checkStage(arn); err != nil {
		return "", err
	}
	return arn, nil
}

// userParam returns the {user} path parameter, unescaped and validated. An id
// holding '/' comes escaped (%2F), one holding '%' as %25.
func userParam(c echo.Context) (string, error) {
	id, err := pathParam(c, "user", "user_id")
	if err != nil {
		return "", err
	}
	return id, checkUser(id)
}

func itoa(n int) string { return strconv.Itoa(n) }

// intQuery reads query parameter name as an integer in [min, max]; def when
// it is absent or empty. Errors: 400 invalid_<name>.
func intQuery(c echo.Context, name string, def, min, max int) (int, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, invalid(name, fmt.Sprintf("must be an integer from %d to %d", min, max))
	}
	return n, nil
}

// timeQuery reads query parameter name as an RFC 3339 time, in UTC from the
// year 1 to 9999 (an offset can push 9999-12-31T23:59:59-23:59 past what the
// answer can show); def when it is absent or empty. Errors: 400
// invalid_<name>.
func timeQuery(c echo.Context, name string, def time.Time) (time.Time, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if y := t.UTC().Year(); err != nil || y < 1 || y > 9999 {
		return time.Time{}, invalid(name, "must be an RFC 3339 time such as 2025-01-31T18:00:00Z, in UTC from the year 1 to 9999")
	}
	return t.UTC(), nil
}

// checkText accepts an optional text of at most max printable characters;
// nil or "" is none (nil).
func checkText(field string, v *string, max int) (*string, error) {
	if v == nil || *v == "" {
		return nil, nil
	}
	if !printable(*v, max) {
		return nil, invalid(field, fmt.Sprintf("must be at most %d printable characters", max))
	}
	return v, nil
}

func ulidErr(id string) error {
	_, err := ulid.ParseStrict(id)
	return err
}
