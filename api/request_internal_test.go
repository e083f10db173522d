package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/labstack/echo/v4"
)

// The contract's patterns; isStageARN, isParticipantID and isCountryCode must accept
// exactly what they accept.
var (
	stageARNPattern      = regexp.MustCompile(`^arn:aws:ivs:[a-z0-9-]+:[0-9]+:stage/[a-zA-Z0-9-]+$`)
	participantIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	countryCodePattern   = regexp.MustCompile(`^[A-Z]{2}$`)
)

func FuzzMatchersAgreeWithPatterns(f *testing.F) {
	for _, s := range []string{
		"arn:aws:ivs:us-east-1:123456789012:stage/abcDEF123", "arn:aws:ivs:us-east-1:123:stage/a-b",
		"arn:aws:ivs::123:stage/a", "arn:aws:ivs:us-east-1::stage/a", "arn:aws:ivs:us-east-1:123:stage/",
		"arn:aws:ivs:US-east-1:123:stage/a", "arn:aws:ivs:us-east-1:12a:stage/a", "arn:aws:ivs:us-east-1:123:stage/a_b",
		"arn:aws:ivs:us-east-1:123:stage/a\n", "arn:aws:ivs:a:b:c:1:stage/x", "arn:aws:ivs:eu:1:stage/a:b",
		"", "p-1", "p_1", "p 1", "é", string(make([]byte, 65)), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isStageARN(s), stageARNPattern.MatchString(s); got != want {
			t.Errorf("isStageARN(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := isParticipantID(s), participantIDPattern.MatchString(s); got != want {
			t.Errorf("isParticipantID(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := isCountryCode(s), countryCodePattern.MatchString(s); got != want {
			t.Errorf("isCountryCode(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}

// joinAnswer writes what c.JSON writes, header and bytes, also for the
// session IDs it leaves to c.JSON.
func TestJoinAnswerIsCJSON(t *testing.T) {
	e := echo.New()
	for _, r := range []joinResponse{
		{SessionID: "01KB0000000000000000000000AB0A1B2C3D", Viewers: 12345, HeartbeatInterval: 30, Timeout: 120},
		{SessionID: "01KB0000000000000000000000AB0A1B2C3D", Viewers: 0, HeartbeatInterval: 1, Timeout: 2, Rejoined: true},
		{SessionID: `a<b>&"\` + "\x01é", Viewers: -1},
		{},
	} {
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		if err := e.NewContext(req, want).JSON(http.StatusOK, r); err != nil {
			t.Fatal(err)
		}
		if err := joinAnswer(e.NewContext(req, got), r); err != nil {
			t.Fatal(err)
		}
		if got.Body.String() != want.Body.String() || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || got.Code != want.Code {
			t.Errorf("joinAnswer(%+v) = %d %q %q, c.JSON = %d %q %q", r, got.Code, got.Header().Get("Content-Type"), got.Body,
				want.Code, want.Header().Get("Content-Type"), want.Body)
		}
		var back joinResponse
		if err := json.Unmarshal(got.Body.Bytes(), &back); err != nil || back != r {
			t.Errorf("joinAnswer(%+v) reads back as %+v (%v)", r, back, err)
		}
	}
	for _, closed := range []bool{true, false} {
		want := httptest.NewRecorder()
		_ = e.NewContext(httptest.NewRequest(http.MethodPost, "/", nil), want).JSON(http.StatusOK, map[string]bool{"closed": closed})
		got := closedFalse
		if closed {
			got = closedTrue
		}
		if string(got) != want.Body.String() {
			t.Errorf("closed %v: %q, c.JSON writes %q", closed, got, want.Body)
		}
	}
}
