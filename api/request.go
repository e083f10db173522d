package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/oklog/ulid/v2"
)

// maxBody bounds every request body; the largest legitimate one (a join) is
// well under 1 KiB.
const maxBody = 4 << 10

// Domain constants of the contract.
var (
	stageARN      = regexp.MustCompile(`^arn:aws:ivs:[a-z0-9-]+:[0-9]+:stage/[a-zA-Z0-9-]+$`)
	participantID = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
)

const maxARN, maxUser = 128, 128

// bind decodes the JSON body of c into v. JSON must come as application/json;
// allowPlain also takes text/plain, which navigator.sendBeacon sends. Unknown
// fields are ignored. Errors are *Error: 415, 413 or 400.
func bind(c echo.Context, v any, allowPlain bool) error {
	r := c.Request()
	mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if err != nil || !(mt == echo.MIMEApplicationJSON || (allowPlain && mt == echo.MIMETextPlain)) {
		want := "application/json"
		if allowPlain {
			want += " or text/plain"
		}
		return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be "+want)
	}
	body := http.MaxBytesReader(c.Response(), r.Body, maxBody)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return decodeError(err)
		}
		return errorf(http.StatusBadRequest, "invalid_json", "the body must hold one JSON object and nothing after it")
	}
	return nil
}

func decodeError(err error) *Error {
	var tooLarge *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return errorf(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body must be at most %d bytes", maxBody))
	case errors.As(err, &typeErr):
		return errorf(http.StatusBadRequest, "invalid_json", fmt.Sprintf("field %s must be a %s", typeErr.Field, typeErr.Type))
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "invalid_json", "the body is empty")
	default:
		return errorf(http.StatusBadRequest, "invalid_json", "the body is not a JSON object")
	}
}

func invalid(field, rule string) *Error {
	return errorf(http.StatusBadRequest, "invalid_"+field, field+" "+rule)
}

func checkStage(arn string) error {
	if arn == "" {
		return invalid("stage_arn", "is required")
	}
	if len(arn) > maxARN || !stageARN.MatchString(arn) {
		return invalid("stage_arn", "must be an IVS stage ARN (arn:aws:ivs:<region>:<account>:stage/<id>), at most 128 characters")
	}
	return nil
}

func checkUser(id string) error {
	if id == "" {
		return invalid("user_id", "is required")
	}
	if !utf8.ValidString(id) || utf8.RuneCountInString(id) > maxUser {
		return invalid("user_id", "must be 1 to 128 printable characters")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return invalid("user_id", "must be 1 to 128 printable characters")
		}
	}
	return nil
}

func checkParticipant(id string) error {
	if id != "" && !participantID.MatchString(id) {
		return invalid("participant_id", "must be 1 to 64 of a-z, A-Z, 0-9, _ and -")
	}
	return nil
}

func checkSession(id string) error {
	if id == "" {
		return invalid("session_id", "is required")
	}
	if _, err := ulid.ParseStrict(id); err != nil {
		return invalid("session_id", "must be a session_id returned by join")
	}
	return nil
}

// stageParam returns the {stage} path parameter, unescaped and validated. The
// ARN holds a '/', so clients send it escaped (%2F).
func stageParam(c echo.Context) (string, error) {
	raw := c.Param("stage")
	arn, err := url.PathUnescape(raw)
	if err != nil {
		return "", invalid("stage_arn", "is not a valid URL-escaped path segment")
	}
	if err := checkStage(arn); err != nil {
		return "", err
	}
	return arn, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
