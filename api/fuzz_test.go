package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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
		checkAnswer(t, fmt.Sprintf("%s %q (%s)", path, body, contentType), rec)
	})
}

// FuzzReadRoutes sends one path segment, query string, cursor and body to
// every read and configuration route, on the real Redis and PostgreSQL: the
// segment both as sent (raw escapes such as %00 or %ff) and escaped, the
// cursor's plain text base64url-encoded as the route makes it. Whatever
// arrives, no answer is a 5xx and every 4xx has an error code.
func FuzzReadRoutes(f *testing.F) {
	h := newReadServer(f)
	arn := url.PathEscape(stage)
	for _, seg := range []string{"alice", arn, "MToA", "%00", "%ff", "a%2541b", "50%25off", "%C3%28", "..", "a/b", "%2F", "a+b", "%"} {
		f.Add(seg, "", "", "{}")
	}
	for _, q := range []string{"cursor=MToA", "cursor=MTr__g", "cursor=%00", "cursor=%ff", "limit=%ff", "limit=-1", "days=%00",
		"days=99999999999999999999", "from=%ff&to=%00", "from=0000-01-01T00:00:00%2B23:59&to=0000-01-02T00:00:00Z",
		"to=9999-12-31T23:59:59-23:59", "cursor=&limit=", "limit=1&limit=1000",
		"by=%00", "by=device&include_bots=%ff", "include_bots=true", "step=1m&from=0001-01-01T00:00:00Z&to=0001-12-31T00:00:00Z",
		"step=auto&from=9998-12-31T00:00:00Z&to=9999-12-31T23:59:59Z", "step=%00", "step=1d&from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z"} {
		f.Add("alice", q, "", "{}")
		f.Add(arn, q, "", "{}")
	}
	for _, plain := range []string{"1:\x00", "1:\xff\xfe", "1:01K0000000000000000000000Z", "9223372036854775807:01K0000000000000000000000Z",
		"-1:01K0000000000000000000000Z", "1:01k0000000000000000000000z"} {
		f.Add("alice", "limit=1", plain, "{}")
	}
	for _, body := range []string{`{"stage_name":"\u0000"}`, "{\"username\":\"\xff\"}", `{"email":"a@b.c","email":"x"}`,
		`{"max_viewers":1e400}`, `{"max_viewers":-1}`, `{"stage_name":"Main","is_master":true,"max_viewers":5}`,
		`{"username":"\ud800"}`, `{"email":"\u200b@example.com"}`, `[]`, ``} {
		f.Add(arn, "", "", body)
		f.Add("alice", "", "", body)
	}
	f.Fuzz(func(t *testing.T, seg, query, plain, body string) {
		if plain != "" {
			query += "&cursor=" + base64.RawURLEncoding.EncodeToString([]byte(plain))
		}
		for _, s := range []string{seg, url.PathEscape(seg)} {
			for _, r := range []struct{ method, path string }{
				{http.MethodGet, "/v1/stages?" + query},
				{http.MethodGet, "/v1/stages/" + s},
				{http.MethodPut, "/v1/stages/" + s},
				{http.MethodDelete, "/v1/stages/" + s},
				{http.MethodGet, "/v1/stages/" + s + "/viewers"},
				{http.MethodGet, "/v1/stages/" + s + "/stats?" + query},
				{http.MethodGet, "/v1/stages/" + s + "/snapshots?" + query},
				{http.MethodGet, "/v1/users/" + s},
				{http.MethodPut, "/v1/users/" + s},
				{http.MethodGet, "/v1/users/" + s + "/history?" + query},
				{http.MethodGet, "/v1/stages/" + s + "/breakdown?by=os&" + query},
				{http.MethodGet, "/v1/stages/" + s + "/breakdown?" + query},
				{http.MethodGet, "/v1/stages/" + s + "/series?" + query},
				{http.MethodGet, "/v1/stages/" + s + "/sessions.csv?" + query},
				{http.MethodGet, "/v1/users/" + s + "/history.csv?" + query},
			} {
				u, err := url.ParseRequestURI(r.path)
				if err != nil {
					continue // net/http answers 400 for such a request line before any route
				}
				req := httptest.NewRequest(r.method, "/", strings.NewReader(body))
				req.URL, req.RequestURI = u, r.path
				if r.method == http.MethodPut {
					req.Header.Set("Content-Type", "application/json")
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				checkAnswer(t, r.method+" "+r.path+" "+strconv.Quote(body), rec)
			}
		}
	})
}

// checkAnswer fails t when rec is a 5xx, or a 4xx without an error code.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s -> %d %s", what, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s -> %d without an error code: %s", what, rec.Code, rec.Body)
		}
	}
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
