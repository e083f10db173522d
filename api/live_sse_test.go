package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// liveHarness is a server with fast live intervals, a registry and the
// server's WriteTimeout set, as cmd/ingest runs it.
type liveHarness struct {
	*harness
	reg *prometheus.Registry
}

func newLiveHarness(t *testing.T, live api.LiveConfig, mutate ...func(*api.Config)) *liveHarness {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	c := testutil.NewClock(time.Now().Truncate(time.Millisecond))
	s := events.NewStream(rdb, prefix, 120*time.Second)
	s.Now = c.Now
	if live.Tick == 0 {
		live.Tick = 50 * time.Millisecond
	}
	reg := ops.NewRegistry()
	cfg := api.Config{Stream: s, RedisTimeout: 500 * time.Millisecond, Registry: reg, Live: live}
	for _, m := range mutate {
		m(&cfg)
	}
	srv := httptest.NewUnstartedServer(api.NewServer(cfg))
	srv.Config.WriteTimeout = 300 * time.Millisecond // streams must outlive it
	srv.Start()
	t.Cleanup(srv.Close)
	return &liveHarness{harness: &harness{t: t, srv: srv, stream: s, rdb: rdb, clock: c}, reg: reg}
}

// sseEvent is one Server-Sent Event as a client sees it; a comment line
// (": ping") is an event with Comment set.
type sseEvent struct {
	ID, Event, Data, Comment, Retry string
}

// counts decodes a counts event into stage -> viewers.
func (e sseEvent) counts(t *testing.T) map[string]int64 {
	t.Helper()
	if e.Event != "counts" {
		t.Fatalf("event %q, want counts: %+v", e.Event, e)
	}
	var body struct {
		Stages []struct {
			Stage   string `json:"stage_arn"`
			Viewers int64  `json:"viewers"`
		} `json:"stages"`
	}
	if err := json.Unmarshal([]byte(e.Data), &body); err != nil {
		t.Fatalf("counts data %q: %v", e.Data, err)
	}
	out := map[string]int64{}
	for _, s := range body.Stages {
		out[s.Stage] = s.Viewers
	}
	return out
}

// sseClient reads a stream into a channel until it ends.
type sseClient struct {
	events chan sseEvent
	done   chan error // the read's end: nil at EOF
	cancel context.CancelFunc
}

// openLive opens GET /v1/live with query and key, fails the test unless it
// answers 200 text/event-stream, and reads its events until the test ends.
func openLive(t *testing.T, base, query, key string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/live"+query, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET /v1/live%s = %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{events: make(chan sseEvent, 1000), done: make(chan error, 1), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		c.done <- readSSE(resp.Body, c.events)
	}()
	t.Cleanup(cancel)
	return c
}

// readSSE parses r's events into out; nil at a clean end of the stream.
func readSSE(r io.Reader, out chan<- sseEvent) error {
	br := bufio.NewReader(r)
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return nil
		}
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if ev != (sseEvent{}) {
				out <- ev
			}
			ev = sseEvent{}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			ev.Comment = value
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			ev.Data += value
		case "retry":
			ev.Retry = value
		}
	}
}

// next returns the next event that is not a ping or a retry line.
func (c *sseClient) next(t *testing.T, within time.Duration) sseEvent {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case ev := <-c.events:
			if ev.Comment != "" || (ev.Retry != "" && ev.Event == "") {
				continue
			}
			return ev
		case err := <-c.done:
			t.Fatalf("the stream ended (%v) while an event was awaited", err)
		case <-timer.C:
			t.Fatalf("no event within %s", within)
		}
	}
}

// waitCount reads counts events until stage has n viewers.
func (c *sseClient) waitCount(t *testing.T, stage string, n int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("%s did not reach %d within %s", stage, n, within)
		}
		ev := c.next(t, left)
		if got, ok := ev.counts(t)[stage]; ok && got == n {
			return
		}
	}
}

const stage2 = "arn:aws:ivs:eu-west-1:123456789012:stage/Second99"

func (h *liveHarness) joinOn(arn, user string) string {
	h.t.Helper()
	a := h.post("/v1/viewers/join", map[string]string{"stage_arn": arn, "user_id": user})
	if a.status != http.StatusOK {
		h.t.Fatalf("join %s %s: %d %v", arn, user, a.status, a.body)
	}
	return a.body["session_id"].(string)
}

// TestLiveStream: the first event lists every active stage with its count
// (and after the retry line); joins and leaves show within 2 s, only the
// changed stage each time, an emptied stage once with 0; pings come; every
// counts event has an id; the stream outlives the server's WriteTimeout.
func TestLiveStream(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{Ping: 100 * time.Millisecond})
	h.joinOn(stage, "a")
	h.joinOn(stage, "b")
	h.joinOn(stage2, "c")

	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/v1/live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first, _ := br.ReadString('\n')
	resp.Body.Close()
	if first != "retry: 2000\n" {
		t.Fatalf("the stream starts with %q, want the retry line", first)
	}

	c := openLive(t, h.srv.URL, "", "")
	ev := c.next(t, 2*time.Second)
	if got := ev.counts(t); len(got) != 2 || got[stage] != 2 || got[stage2] != 1 {
		t.Fatalf("first counts = %v", got)
	}
	if ev.ID == "" {
		t.Fatal("counts event without an id")
	}

	session := h.joinOn(stage2, "d")
	ev = c.next(t, 2*time.Second)
	if got := ev.counts(t); len(got) != 1 || got[stage2] != 2 {
		t.Fatalf("after a join: %v, want only %s at 2", got, stage2)
	}
	// Leaves: stage2 empties and appears once with 0.
	h.post("/v1/viewers/leave", map[string]string{"session_id": session})
	c.waitCount(t, stage2, 1, 2*time.Second)
	sessionC := h.joinOn(stage2, "c") // continues c's session
	h.post("/v1/viewers/leave", map[string]string{"session_id": sessionC})
	c.waitCount(t, stage2, 0, 2*time.Second)

	// Past the WriteTimeout (300 ms) the stream still carries events and pings.
	pings := 0
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		select {
		case ev := <-c.events:
			if ev.Comment == "ping" {
				pings++
			}
			if ev.Event == "counts" && hasStage(ev.counts(t), stage2) {
				t.Fatalf("an emptied stage came again: %+v", ev)
			}
		case err := <-c.done:
			t.Fatalf("stream ended: %v", err)
		default:
		}
		return pings >= 5, fmt.Sprintf("%d pings", pings)
	})
	h.joinOn(stage, "late")
	c.waitCount(t, stage, 3, 2*time.Second)
}

// TestLiveRestartsFresh: once its last client left, the hub forgets its
// reading, so the next client's first event has the counts of now.
func TestLiveRestartsFresh(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{})
	h.joinOn(stage, "a")
	c := openLive(t, h.srv.URL, "", "")
	if got := c.next(t, 2*time.Second).counts(t); got[stage] != 1 {
		t.Fatalf("first counts = %v", got)
	}
	c.cancel()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		n := gauge(t, h.reg, "viewpulse_live_clients")
		return n == 0, fmt.Sprintf("%v clients", n)
	})
	h.joinOn(stage, "b")
	c = openLive(t, h.srv.URL, "", "")
	if got := c.next(t, 2*time.Second).counts(t); got[stage] != 2 {
		t.Fatalf("first counts of a later client = %v, want %s at 2", got, stage)
	}
}

// TestLiveFilter: ?stage= narrows the stream to the stages named (a named
// stage without viewers first shows 0); a bad one is 400.
func TestLiveFilter(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{})
	h.joinOn(stage, "a")
	h.joinOn(stage2, "b")
	const idle = "arn:aws:ivs:eu-west-1:123456789012:stage/Idle"
	c := openLive(t, h.srv.URL, "?stage="+url.QueryEscape(stage2)+"&stage="+url.QueryEscape(idle), "")
	if got := c.next(t, 2*time.Second).counts(t); len(got) != 2 || got[stage2] != 1 || got[idle] != 0 {
		t.Fatalf("first filtered counts = %v", got)
	}
	h.joinOn(stage, "x") // not in the filter
	h.joinOn(stage2, "y")
	if got := c.next(t, 2*time.Second).counts(t); len(got) != 1 || got[stage2] != 2 {
		t.Fatalf("filtered change = %v, want only %s", got, stage2)
	}

	for _, q := range []string{"?stage=nope", "?stage=", "?stage=" + strings.Repeat("&stage="+url.QueryEscape(stage), 101)} {
		a := h.do(http.MethodGet, "/v1/live"+q, "", "")
		if a.status != 400 || a.code() != "invalid_stage_arn" {
			t.Errorf("GET /v1/live%.40s = %d %s, want 400 invalid_stage_arn", q, a.status, a.code())
		}
	}
}

// TestLiveNeedsKey: with API_KEYS the stream needs the key in the
// Authorization header.
func TestLiveNeedsKey(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{}, func(c *api.Config) { c.APIKeys = []string{"k1"} })
	if a := h.do(http.MethodGet, "/v1/live", "", ""); a.status != 401 || a.code() != "unauthorized" {
		t.Fatalf("without key: %d %s", a.status, a.code())
	}
	c := openLive(t, h.srv.URL, "", "k1")
	if ev := c.next(t, 2*time.Second); ev.Event != "counts" {
		t.Fatalf("with key: %+v", ev)
	}
}

// TestLiveRedisUnavailable: when the counts cannot be read, the stream says
// so with a status event instead of ending.
func TestLiveRedisUnavailable(t *testing.T) {
	srv := serverWithoutRedis(t, 50*time.Millisecond)
	c := openLive(t, srv.URL, "", "")
	if ev := c.next(t, 2*time.Second); ev.Event != "status" || !strings.Contains(ev.Data, `"unavailable"`) {
		t.Fatalf("first event = %+v, want status unavailable", ev)
	}
}

// TestLiveDropsSlowClient: a client that stops reading is cut off once its
// queue is full, and the server closes its connection; the hub's memory for
// it is bounded by the queue. The counts of 600 stages are made to change
// at every tick (the stream's clock jumps past the timeout and back) so the
// socket buffers fill quickly.
func TestLiveDropsSlowClient(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{Tick: 10 * time.Millisecond, Buffer: 4, WriteWait: 300 * time.Millisecond})
	ctx := context.Background()
	long := strings.Repeat("x", 80) // ~150 bytes per stage in an event, for few Redis reads
	for i := range 600 {
		if _, err := h.stream.Join(ctx, events.JoinRequest{Stage: fmt.Sprintf("arn:aws:ivs:eu-west-1:123456789012:stage/%s%04d", long, i), User: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/live HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	if status, _ := br.ReadString('\n'); !strings.Contains(status, " 200 ") {
		t.Fatalf("status line %q", status)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // every tick sees every count change
		defer wg.Done()
		for jump := 200 * time.Second; ; jump = -jump {
			select {
			case <-stop:
				if jump < 0 {
					h.clock.Add(jump)
				}
				return
			case <-time.After(3 * time.Millisecond):
				h.clock.Add(jump)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		n := gauge(t, h.reg, "viewpulse_live_clients_dropped_total")
		return n == 1, fmt.Sprintf("dropped = %v", n)
	})
	if n := gauge(t, h.reg, "viewpulse_live_clients"); n != 0 {
		t.Fatalf("viewpulse_live_clients = %v after the drop", n)
	}
	// Reading again drains what the sockets held, then the server's close.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the dropped client's connection was not closed: %v", err)
	}
}

// TestLiveOutsideLatencyHistogram: a stream is counted in
// viewpulse_http_requests_total when it ends, and never observed in the
// request-duration histogram.
func TestLiveOutsideLatencyHistogram(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{})
	c := openLive(t, h.srv.URL, "", "")
	c.next(t, 2*time.Second)
	c.cancel()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		n := gauge(t, h.reg, "viewpulse_live_clients")
		return n == 0, fmt.Sprintf("live clients %v", n)
	})
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		body := h.metrics()
		return strings.Contains(body, `viewpulse_http_requests_total{method="GET",route="/v1/live",status="200"} 1`), "no request counted for /v1/live"
	})
	h.do(http.MethodGet, "/v1/stages", "", "") // a route that is observed
	body := h.metrics()
	if strings.Contains(body, `route="/v1/live"`+"}") || strings.Contains(body, `viewpulse_http_request_duration_seconds_count{method="GET",route="/v1/live"}`) {
		t.Fatalf("/v1/live is in the latency histogram:\n%s", body)
	}
	if !strings.Contains(body, `viewpulse_http_request_duration_seconds_count{method="GET",route="/v1/stages"}`) {
		t.Fatalf("the histogram misses /v1/stages:\n%s", body)
	}
}

func hasStage(m map[string]int64, arn string) bool { _, ok := m[arn]; return ok }

// gauge is the value of the unlabelled metric name in reg (0 when absent).
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.Metric) == 0 {
			continue
		}
		m := mf.Metric[0]
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	return 0
}

// serverWithoutRedis is a server whose Redis never answers (a free port),
// its live hub ticking every tick.
func serverWithoutRedis(t *testing.T, tick time.Duration) *httptest.Server {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	srv := httptest.NewServer(api.NewServer(api.Config{
		Stream: events.NewStream(rdb, "vp", time.Minute), RedisTimeout: 200 * time.Millisecond,
		Live: api.LiveConfig{Tick: tick},
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestLiveGroups: clients without a filter get a groups event with every
// group's distinct viewers and capacity, at once and whenever it changes.
func TestLiveGroups(t *testing.T) {
	h := newLiveHarness(t, api.LiveConfig{})
	master, children := groupStages(2)
	makeGroup(t, h.harness, master, children, 2)
	c := openLive(t, h.srv.URL, "", "")
	waitGroup := func(viewers float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Until(deadline) > 0 {
			ev := c.next(t, time.Until(deadline))
			if ev.Event != "groups" {
				continue
			}
			var body struct {
				Groups []map[string]any `json:"groups"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &body); err != nil {
				t.Fatalf("groups event %q: %v", ev.Data, err)
			}
			if len(body.Groups) == 1 && body.Groups[0]["master_stage_arn"] == master && body.Groups[0]["viewers"] == viewers &&
				body.Groups[0]["capacity"] == float64(4) && body.Groups[0]["stages"] == float64(2) {
				return
			}
		}
		t.Fatalf("no groups event with %v viewers", viewers)
	}
	waitGroup(0)
	h.joinOn(master, "twice")
	h.joinOn(children[0], "twice")
	waitGroup(1)
	h.joinOn(children[0], "other")
	waitGroup(2)
}
