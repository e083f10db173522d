package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

const stage = "arn:aws:ivs:eu-west-1:123456789012:stage/AbCd1234"

type harness struct {
	t      *testing.T
	srv    *httptest.Server
	stream *events.Stream
	rdb    redis.UniversalClient
	clock  *testutil.Clock
}

func newHarness(t *testing.T, mutate ...func(*api.Config)) *harness {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	return newHarnessOn(t, rdb, prefix, mutate...)
}

func newHarnessOn(t *testing.T, rdb redis.UniversalClient, prefix string, mutate ...func(*api.Config)) *harness {
	t.Helper()
	return newPartitionedHarness(t, rdb, prefix, 1, mutate...)
}

// newPartitionedHarness serves a deployment of parts partitions on rdb (a
// single Redis or a cluster) under prefix.
func newPartitionedHarness(t *testing.T, rdb redis.UniversalClient, prefix string, parts int, mutate ...func(*api.Config)) *harness {
	t.Helper()
	c := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	s := events.NewPartitionedStream(rdb, prefix, 120*time.Second, parts)
	s.Now = c.Now
	cfg := api.Config{Stream: s, RedisTimeout: 500 * time.Millisecond}
	for _, m := range mutate {
		m(&cfg)
	}
	srv := httptest.NewServer(api.NewServer(cfg))
	t.Cleanup(srv.Close)
	return &harness{t: t, srv: srv, stream: s, rdb: rdb, clock: c}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a answer) code() string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (a answer) message() string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

func (h *harness) do(method, path, contentType, body string, headers ...string) answer {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			h.t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
		}
	}
	return a
}

func (h *harness) post(path string, body any) answer {
	h.t.Helper()
	b, _ := json.Marshal(body)
	return h.do(http.MethodPost, path, "application/json", string(b))
}

func (h *harness) join(user string) answer {
	h.t.Helper()
	a := h.post("/v1/viewers/join", map[string]string{"stage_arn": stage, "user_id": user})
	if a.status != http.StatusOK {
		h.t.Fatalf("join %s: %d %v", user, a.status, a.body)
	}
	return a
}

// streamLen is the number of events in every partition's stream.
func (h *harness) streamLen() int64 {
	h.t.Helper()
	var n int64
	for p := range h.stream.Partitions() {
		l, err := h.rdb.XLen(context.Background(), h.stream.PartitionKeys(p).Stream()).Result()
		if err != nil {
			h.t.Fatal(err)
		}
		n += l
	}
	return n
}

// lastEvent is the newest event of stage's partition.
func (h *harness) lastEvent() events.Event {
	h.t.Helper()
	msgs, err := h.rdb.XRevRangeN(context.Background(), h.stream.KeysOf(stage).Stream(), "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		h.t.Fatalf("last event: %v %v", msgs, err)
	}
	e, err := events.Decode(msgs[0].ID, msgs[0].Values)
	if err != nil {
		h.t.Fatal(err)
	}
	return e
}

func num(v any) int64 { f, _ := v.(float64); return int64(f) }

func joinHeartbeatLeaveFlow(t *testing.T, h *harness) {
	a := h.join("alice")
	sid, _ := a.body["session_id"].(string)
	if num(a.body["viewers"]) != 1 || a.body["rejoined"] != false || num(a.body["timeout_seconds"]) != 120 || num(a.body["heartbeat_interval_seconds"]) != 30 {
		t.Fatalf("join answer = %v", a.body)
	}
	h.clock.Add(30 * time.Second)
	if a := h.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid}); a.status != 200 || num(a.body["viewers"]) != 1 {
		t.Fatalf("heartbeat = %d %v", a.status, a.body)
	}
	if h.lastEvent().Type != events.Heartbeat {
		t.Fatal("heartbeat not in the stream")
	}
	if a := h.post("/v1/viewers/leave", map[string]string{"session_id": sid}); a.status != 200 || a.body["closed"] != true {
		t.Fatalf("leave = %d %v", a.status, a.body)
	}
	if a := h.post("/v1/viewers/leave", map[string]string{"session_id": sid}); a.status != 200 || a.body["closed"] != false {
		t.Fatalf("repeated leave = %d %v", a.status, a.body)
	}
	if a := h.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid}); a.status != 404 || a.code() != "session_not_found" {
		t.Fatalf("heartbeat after leave = %d %v", a.status, a.body)
	}
	if n := h.streamLen(); n != 3 {
		t.Fatalf("stream holds %d events, want join, heartbeat, leave", n)
	}
}

func twoTabsAndRejoin(t *testing.T, h *harness) {
	first := h.join("bob")
	second := h.join("bob")
	if second.body["session_id"] != first.body["session_id"] || second.body["rejoined"] != true || num(second.body["viewers"]) != 1 {
		t.Fatalf("second tab = %v, first = %v", second.body, first.body)
	}
	h.join("carol")
	a := h.do(http.MethodGet, "/v1/stages/"+url.PathEscape(stage)+"/viewers", "", "")
	if a.status != 200 || num(a.body["viewers"]) != 2 || len(a.body["users"].([]any)) != 2 {
		t.Fatalf("viewers = %d %v", a.status, a.body)
	}
}

func leaveAcceptsBeaconBody(t *testing.T, h *harness) {
	sid := h.join("dan").body["session_id"].(string)
	a := h.do(http.MethodPost, "/v1/viewers/leave", "text/plain;charset=UTF-8", `{"session_id":"`+sid+`"}`)
	if a.status != 200 || a.body["closed"] != true {
		t.Fatalf("beacon leave = %d %v", a.status, a.body)
	}
}

func expiryByInjectedTime(t *testing.T, h *harness) {
	sid := h.join("erin").body["session_id"].(string)
	path := "/v1/stages/" + url.PathEscape(stage) + "/viewers"
	h.clock.Add(119 * time.Second)
	if a := h.do(http.MethodGet, path, "", ""); num(a.body["viewers"]) != 1 {
		t.Fatalf("before timeout: %v", a.body)
	}
	h.clock.Add(2 * time.Second)
	if a := h.do(http.MethodGet, path, "", ""); num(a.body["viewers"]) != 0 {
		t.Fatalf("after timeout, no sweeper: %v", a.body)
	}
	if a := h.do(http.MethodGet, "/v1/stages", "", ""); a.status != 200 || num(a.body["stages"].([]any)[0].(map[string]any)["viewers"]) != 0 {
		t.Fatalf("stages after timeout: %v", a.body)
	}
	if a := h.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid}); a.status != 404 {
		t.Fatalf("heartbeat after timeout = %d", a.status)
	}
	if a := h.join("erin"); a.body["rejoined"] != false || a.body["session_id"] == sid {
		t.Fatalf("join after timeout = %v", a.body)
	}
}

func thousandConcurrentJoins(t *testing.T, h *harness) {
	const users = 1000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	fails := make(chan string, users)
	for i := 0; i < users; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			b := fmt.Sprintf(`{"stage_arn":%q,"user_id":"user-%d"}`, stage, i)
			resp, err := http.Post(h.srv.URL+"/v1/viewers/join", "application/json", strings.NewReader(b))
			if err != nil {
				fails <- err.Error()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				fails <- resp.Status
			}
		}()
	}
	wg.Wait()
	close(fails)
	for f := range fails {
		t.Fatal(f)
	}
	if n, _ := h.stream.Count(context.Background(), stage); n != users {
		t.Fatalf("count = %d", n)
	}
	if n := h.streamLen(); n != users {
		t.Fatalf("join events = %d", n)
	}
}

func badInputChangesNothing(t *testing.T, h *harness) {
	sid := h.join("frank").body["session_id"].(string)
	before := h.streamLen()
	long := strings.Repeat("a", 129)
	huge := `{"stage_arn":"` + stage + `","user_id":"` + strings.Repeat("x", 5000) + `"}`
	cases := []struct {
		name, path, ctype, body string
		status                  int
		code                    string
	}{
		{"malformed json", "/v1/viewers/join", "application/json", `{"stage_arn":`, 400, "invalid_json"},
		{"not an object", "/v1/viewers/join", "application/json", `[1,2]`, 400, "invalid_json"},
		{"empty body", "/v1/viewers/join", "application/json", ``, 400, "invalid_json"},
		{"trailing data", "/v1/viewers/join", "application/json", `{"stage_arn":"` + stage + `","user_id":"u"} {}`, 400, "invalid_json"},
		{"wrong type", "/v1/viewers/join", "application/json", `{"stage_arn":"` + stage + `","user_id":5}`, 400, "invalid_json"},
		{"missing stage", "/v1/viewers/join", "application/json", `{"user_id":"u"}`, 400, "invalid_stage_arn"},
		{"bad arn", "/v1/viewers/join", "application/json", `{"stage_arn":"arn:aws:s3:::bucket","user_id":"u"}`, 400, "invalid_stage_arn"},
		{"long arn", "/v1/viewers/join", "application/json", `{"stage_arn":"` + stage + strings.Repeat("a", 100) + `","user_id":"u"}`, 400, "invalid_stage_arn"},
		{"missing user", "/v1/viewers/join", "application/json", `{"stage_arn":"` + stage + `"}`, 400, "invalid_user_id"},
		{"long user", "/v1/viewers/join", "application/json", `{"stage_arn":"` + stage + `","user_id":"` + long + `"}`, 400, "invalid_user_id"},
		{"control char user", "/v1/viewers/join", "application/json", `{"stage_arn":"` + stage + `","user_id":"a\u0007b"}`, 400, "invalid_user_id"},
		{"bad participant", "/v1/viewers/join", "application/json", `{"stage_arn":"` + stage + `","user_id":"u","participant_id":"no spaces"}`, 400, "invalid_participant_id"},
		{"too large", "/v1/viewers/join", "application/json", huge, 413, "body_too_large"},
		{"form body", "/v1/viewers/join", "application/x-www-form-urlencoded", `stage_arn=x`, 415, "unsupported_media_type"},
		{"no content type", "/v1/viewers/join", "", `{}`, 415, "unsupported_media_type"},
		{"plain join", "/v1/viewers/join", "text/plain", `{"stage_arn":"` + stage + `","user_id":"u"}`, 415, "unsupported_media_type"},
		{"missing session", "/v1/viewers/heartbeat", "application/json", `{}`, 400, "invalid_session_id"},
		{"bad session", "/v1/viewers/heartbeat", "application/json", `{"session_id":"nope"}`, 400, "invalid_session_id"},
		{"bad session leave", "/v1/viewers/leave", "text/plain", `{"session_id":"` + sid + `x"}`, 400, "invalid_session_id"},
		{"unknown route", "/v1/viewers/jump", "application/json", `{}`, 404, "not_found"},
	}
	for _, tc := range cases {
		a := h.do(http.MethodPost, tc.path, tc.ctype, tc.body)
		if a.status != tc.status || a.code() != tc.code {
			t.Errorf("%s: got %d %q, want %d %q (%v)", tc.name, a.status, a.code(), tc.status, tc.code, a.body)
		}
	}
	if a := h.do(http.MethodGet, "/v1/stages/not-an-arn/viewers", "", ""); a.status != 400 || a.code() != "invalid_stage_arn" {
		t.Errorf("bad stage param: %d %v", a.status, a.body)
	}
	if a := h.do(http.MethodGet, "/v1/viewers/join", "", ""); a.status != 405 || a.code() != "method_not_allowed" {
		t.Errorf("GET join: %d %v", a.status, a.body)
	}
	if after := h.streamLen(); after != before {
		t.Fatalf("bad input appended %d events", after-before)
	}
	// An unknown field is ignored, not refused.
	if a := h.post("/v1/viewers/join", map[string]any{"stage_arn": stage, "user_id": "gina", "extra": true}); a.status != 200 {
		t.Fatalf("unknown field: %d %v", a.status, a.body)
	}
}

func TestClientIPAndCountry(t *testing.T) {
	trusted := netip.MustParsePrefix("127.0.0.0/8")
	h := newHarness(t, func(c *api.Config) { c.TrustedProxies = []netip.Prefix{trusted} })
	body := `{"stage_arn":"` + stage + `","user_id":"hana"}`
	a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", body,
		"X-Forwarded-For", "81.2.69.160", "CloudFront-Viewer-Country", "JP", "User-Agent", "test-agent/1.0")
	if a.status != 200 {
		t.Fatalf("join = %d %v", a.status, a.body)
	}
	e := h.lastEvent()
	if e.IP != "81.2.69.160" || e.Country != "JP" || e.UA != "test-agent/1.0" {
		t.Fatalf("trusted proxy: event = %+v", e)
	}

	// From an untrusted peer the headers are ignored: the IP is the
	// connection's and the country comes from the embedded table (loopback
	// has none).
	u := newHarness(t)
	u.do(http.MethodPost, "/v1/viewers/join", "application/json", body, "X-Forwarded-For", "81.2.69.160", "CF-IPCountry", "JP")
	e = u.lastEvent()
	if e.IP != "127.0.0.1" || e.Country != "" {
		t.Fatalf("untrusted peer: event = %+v", e)
	}
}

func TestCountryFromEmbeddedTable(t *testing.T) {
	h := newHarness(t, func(c *api.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	// 81.2.69.160 is in a GB block in every public IP-to-country table.
	h.do(http.MethodPost, "/v1/viewers/join", "application/json", `{"stage_arn":"`+stage+`","user_id":"ian"}`, "X-Forwarded-For", "81.2.69.160")
	if e := h.lastEvent(); e.Country != "GB" {
		t.Fatalf("country = %q", e.Country)
	}
}

func TestRedisDownAnswers503(t *testing.T) {
	srv := testutil.StartRedisServer(t)
	opt, _ := redis.ParseURL(srv.URL)
	opt.MaxRetries = -1
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	h := newHarnessOn(t, rdb, "vp")
	sid := h.join("jack").body["session_id"].(string)
	// Past half the heartbeat interval, so that the heartbeat needs Redis
	// (an earlier one is answered from memory: heartbeat_skip.go).
	h.clock.Add(16 * time.Second)
	srv.Kill(t)
	for _, tc := range []struct{ path, body string }{
		{"/v1/viewers/join", `{"stage_arn":"` + stage + `","user_id":"kate"}`},
		{"/v1/viewers/heartbeat", `{"session_id":"` + sid + `"}`},
		{"/v1/viewers/leave", `{"session_id":"` + sid + `"}`},
	} {
		// A call that reached a dead connection may have run, as far as
		// ingest can tell: outcome_unknown; one that found no connection
		// did not: dependency_unavailable.
		a := h.do(http.MethodPost, tc.path, "application/json", tc.body)
		if code := a.code(); a.status != 503 || (code != "dependency_unavailable" && code != "outcome_unknown") || a.header.Get("Retry-After") == "" {
			t.Errorf("%s with Redis down = %d %v", tc.path, a.status, a.body)
		}
	}
	if a := h.do(http.MethodGet, "/v1/stages", "", ""); a.status != 503 {
		t.Errorf("stages with Redis down = %d", a.status)
	}
	srv.Start(t)
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", `{"stage_arn":"`+stage+`","user_id":"kate"}`)
		return a.status == 200, fmt.Sprint(a.status, a.body)
	})
}

func backpressureAnswers503WithRetryAfter(t *testing.T, h *harness) {
	h.stream.MaxLen = 1
	h.join("lena")
	a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", `{"stage_arn":"`+stage+`","user_id":"mike"}`)
	if a.status != 503 || a.code() != "backpressure" || a.header.Get("Retry-After") != "5" {
		t.Fatalf("over the bound = %d %v %v", a.status, a.body, a.header)
	}
	if n := h.streamLen(); n != 1 {
		t.Fatalf("stream = %d", n)
	}
	// The bound is per partition: a stage of another partition is not
	// refused (with one partition there is no other).
	other := stageIn(h, (h.stream.KeysOf(stage).Partition()+1)%h.stream.Partitions())
	a = h.post("/v1/viewers/join", map[string]string{"stage_arn": other, "user_id": "mike"})
	if want := map[bool]int{true: 200, false: 503}[h.stream.Partitions() > 1]; a.status != want {
		t.Fatalf("join to %s (partition %d of %d) beside a full partition = %d %v, want %d",
			other, h.stream.KeysOf(other).Partition(), h.stream.Partitions(), a.status, a.body, want)
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.Ready = map[string]ops.Check{"broken": func(context.Context) error { return fmt.Errorf("down") }}
	})
	if a := h.do(http.MethodGet, "/healthz", "", ""); a.status != 200 {
		t.Fatalf("healthz = %d", a.status)
	}
	if a := h.do(http.MethodGet, "/readyz", "", ""); a.status != 503 || fmt.Sprint(a.body["failed"]) != "[broken]" ||
		a.message() != "a dependency does not answer: broken" {
		t.Fatalf("readyz = %d %v", a.status, a.body)
	}
}
