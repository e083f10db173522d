package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// fuzzBody sends arbitrary bodies and content types to one player route of a
// server on the real Redis: whatever arrives, the answer is a 2xx or a 4xx
// with an error code, never a 5xx or a panic. Failing inputs are kept under
// testdata/fuzz/<name>/ and replayed by every plain `go test`.
func fuzzBody(f *testing.F, path string, seeds ...string) {
	rdb, prefix := testutil.Redis(f)
	stream := events.NewStream(rdb, prefix, 120*time.Second)
	h := api.NewServer(api.Config{Stream: stream, RedisTimeout: 2 * time.Second})
	for _, s := range seeds {
		f.Add("application/json", s)
		f.Add("text/plain;charset=UTF-8", s)
	}
	f.Add("application/x-www-form-urlencoded", "a=b")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q (%s) -> %d %s", path, body, contentType, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
				t.Fatalf("%s %q -> %d without an error code: %s", path, body, rec.Code, rec.Body)
			}
		}
	})
}

func FuzzJoinBody(f *testing.F) {
	fuzzBody(f, "/v1/viewers/join",
		`{"stage_arn":"arn:aws:ivs:us-east-1:123456789012:stage/abc","user_id":"u","participant_id":"p-1"}`,
		`{"stage_arn":"arn:aws:ivs:us-east-1:1:stage/x","user_id":"\u00e9\u4e2d|pipe"}`,
		`{"stage_arn":null,"user_id":[1]}`, `{}`, `[]`, `"`, `{"user_id":"u","stage_arn":"arn:aws:ivs:a:1:stage/"}`)
}

func FuzzHeartbeatBody(f *testing.F) {
	fuzzBody(f, "/v1/viewers/heartbeat", `{"session_id":"01K0000000000000000000000Z"}`, `{"session_id":"8ZZZZZZZZZZZZZZZZZZZZZZZZZ"}`, `{"session_id":1}`)
}

func FuzzLeaveBody(f *testing.F) {
	fuzzBody(f, "/v1/viewers/leave", `{"session_id":"01K0000000000000000000000Z"}`, `{"session_id":""}`, `{"session_id":"01K0000000000000000000000Z"}{}`)
}
