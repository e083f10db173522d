package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"median of even is the lower", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 1..100", hundred, 0.99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the max", hundred, 0.999, 100 * time.Millisecond},
		{"p100", hundred, 1, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.0001, time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(p=%g) = %s, want %s", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestSummaryMath(t *testing.T) {
	r := newRecorder()
	for i := 1; i <= 1000; i++ {
		status := 200
		if i%100 == 0 {
			status = 503
		}
		r.add(false, status, nil, time.Duration(i)*time.Millisecond)
	}
	r.add(true, 200, nil, time.Hour) // warm-up: left out
	s := r.summary(1000, 2*time.Second, 4*time.Second, 3)
	if s.Completed != 1000 || s.OK != 990 || s.Errors["503"] != 10 || len(s.Errors) != 1 {
		t.Fatalf("counts: %+v", s)
	}
	if s.P50 != 500*time.Millisecond || s.P99 != 990*time.Millisecond || s.P999 != 999*time.Millisecond || s.Max != time.Second {
		t.Errorf("percentiles: p50 %s p99 %s p99.9 %s max %s", s.P50, s.P99, s.P999, s.Max)
	}
	if s.Rate != 500 || s.Throughput != 247.5 {
		t.Errorf("rate %g, throughput %g; want 500, 247.5", s.Rate, s.Throughput)
	}
	if s.ErrorRatio() != 0.01 {
		t.Errorf("error ratio %g", s.ErrorRatio())
	}
	var b strings.Builder
	s.Print(&b)
	for _, want := range []string{"errors 10 (1.00%)", "p99 990.00ms", "503=10"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Duration: time.Second, MaxRequests: 1, Workers: 1, Timeout: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"no duration":    func(c *Config) { c.Duration = 0 },
		"no bound":       func(c *Config) { c.MaxRequests = 0 },
		"no workers":     func(c *Config) { c.Workers = 0 },
		"no timeout":     func(c *Config) { c.Timeout = 0 },
		"long warm-up":   func(c *Config) { c.Warmup = time.Second },
		"neg. warm-up":   func(c *Config) { c.Warmup = -1 },
		"too long a run": func(c *Config) { c.Duration = 25 * time.Hour },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRunSendsExactlyMaxRequests counts, on the server side, the requests of
// a run bounded by count, and checks statuses are tallied per code.
func TestRunSendsExactlyMaxRequests(t *testing.T) {
	var got, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(string(body), `{"session_id":"`) {
			bad.Add(1)
		}
		if got.Add(1)%4 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	sessions := []string{ulid.Make().String(), ulid.Make().String()}
	sum, err := Run(context.Background(), Config{Duration: 10 * time.Second, MaxRequests: 200, Workers: 8, Timeout: 5 * time.Second},
		Heartbeats(Target{Base: srv.URL}, 2000, sessions))
	if err != nil {
		t.Fatal(err)
	}
	if got.Load() != 200 || bad.Load() != 0 {
		t.Fatalf("server saw %d requests (%d malformed), want 200", got.Load(), bad.Load())
	}
	if sum.Sent != 200 || sum.Completed != 200 || sum.OK != 150 || sum.Errors["503"] != 50 {
		t.Errorf("summary %+v", sum)
	}
	if sum.Workers < 1 || sum.Workers > 8 {
		t.Errorf("workers %d, want 1 to 8", sum.Workers)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	// 100/s for 50 ms schedules offsets 0, 10, 20, 30, 40 ms: exactly five.
	sum, err := Run(context.Background(), Config{Duration: 50 * time.Millisecond, MaxRequests: 1000, Workers: 4, Timeout: 5 * time.Second},
		Joins(Target{Base: srv.URL}, 100, Stages(3), "t"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Load() != 5 || sum.Sent != 5 || sum.OK != 5 {
		t.Fatalf("server saw %d, summary %+v; want 5", got.Load(), sum)
	}
}

func TestPrejoinMakesUpSessionsForABareServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	sessions, err := Prejoin(context.Background(), srv.Client(), Target{Base: srv.URL}, 10, Stages(2), "t", 4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range sessions {
		if _, err := ulid.ParseStrict(s); err != nil || seen[s] {
			t.Fatalf("session %q: not a fresh ULID (%v)", s, err)
		}
		seen[s] = true
	}
}

func TestPrejoinFailsOnRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer srv.Close()
	if _, err := Prejoin(context.Background(), srv.Client(), Target{Base: srv.URL}, 5, Stages(1), "t", 2); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want one naming status 503", err)
	}
}

// TestViewersLifecycle drives the viewers source by hand: a viewer joins,
// heartbeats with its session while watching, rejoins after a 404, and
// leaves at the end.
func TestViewersLifecycle(t *testing.T) {
	cfg := ViewersConfig{
		Viewers: 1, ArrivalRate: 1, Heartbeat: 10 * time.Second, Watch: 100 * time.Second,
		Stages: Stages(1), Run: "r", Seed: 7,
	}
	v, err := NewViewers(Target{Base: "http://x"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var last time.Duration
	for {
		at, r, ok := v.Next()
		if !ok {
			break
		}
		if at < last {
			t.Fatalf("offset %s after %s", at, last)
		}
		last = at
		if r.Kind != "join" && !strings.Contains(string(r.Body), `"S`) {
			t.Errorf("%s without a session: %s", r.Kind, r.Body)
		}
		kinds = append(kinds, r.Kind)
		switch {
		case r.Kind == "join":
			v.Result(r, 200, []byte(`{"session_id":"S`+strconv.Itoa(len(kinds))+`"}`))
		case len(kinds) == 3:
			v.Result(r, 404, nil)
		default:
			v.Result(r, 200, nil)
		}
	}
	// watch is 50 s to 150 s: join, hb, hb(404), join, …, leave
	if len(kinds) < 6 || kinds[0] != "join" || kinds[2] != "heartbeat" || kinds[3] != "join" || kinds[len(kinds)-1] != "leave" {
		t.Errorf("steps %v: want join, heartbeat, heartbeat (404), join, heartbeats…, leave", kinds)
	}

	// While a join is unanswered, the viewer's heartbeats and leave are
	// skipped: single-threaded, nothing answers it, so nothing follows.
	v, _ = NewViewers(Target{Base: "http://x"}, cfg)
	if _, r, ok := v.Next(); !ok || r.Kind != "join" {
		t.Fatalf("first step %v %v, want a join", r.Kind, ok)
	}
	if _, r, ok := v.Next(); ok {
		t.Fatalf("a %s was sent while the join was unanswered", r.Kind)
	}
}

func TestViewersVanish(t *testing.T) {
	v, err := NewViewers(Target{Base: "http://x"}, ViewersConfig{
		Viewers: 200, ArrivalRate: 100, Heartbeat: time.Second, Watch: 2 * time.Second, Vanish: 1,
		Stages: Stages(20), Run: "r", Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for {
		_, r, ok := v.Next()
		if !ok {
			break
		}
		counts[r.Kind]++
		if r.Kind == "join" {
			v.Result(r, 200, []byte(`{"session_id":"S"}`))
		}
	}
	if counts["join"] != 200 || counts["leave"] != 0 || counts["heartbeat"] < 200 {
		t.Errorf("counts %v: want 200 joins, no leaves, heartbeats", counts)
	}
}

// TestViewersRealisticAudience: with LongTail, stays are log-normal around
// the median Watch (half shorter, a tail of long ones); with Rejoin, that
// fraction of viewers join again after their stay, forgetting the session.
func TestViewersRealisticAudience(t *testing.T) {
	const n = 4000
	v, err := NewViewers(Target{Base: "http://x"}, ViewersConfig{
		Viewers: n, ArrivalRate: 1000, Heartbeat: 30 * time.Second, Watch: 20 * time.Minute, LongTail: true,
		Vanish: 0.2, Rejoin: 0.02, Stages: Stages(10), Run: "r", Seed: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	joins := map[int]int{}
	first, last := map[int]time.Duration{}, map[int]time.Duration{}
	counts := map[string]int{}
	for {
		at, r, ok := v.Next()
		if !ok {
			break
		}
		counts[r.Kind]++
		if _, seen := first[r.Viewer]; !seen {
			first[r.Viewer] = at
		}
		if r.Kind == "join" {
			joins[r.Viewer]++
			if joins[r.Viewer] > 1 && strings.Contains(string(r.Body), "session") {
				t.Fatalf("a rejoin carries a session: %s", r.Body)
			}
			v.Result(r, 200, []byte(`{"session_id":"S`+strconv.Itoa(r.Viewer)+`"}`))
		}
		if joins[r.Viewer] == 1 {
			last[r.Viewer] = at
		}
	}
	var stays []time.Duration
	rejoined := 0
	for viewer := range n {
		stays = append(stays, last[viewer]-first[viewer])
		if joins[viewer] > 1 {
			rejoined++
		}
	}
	slices.Sort(stays)
	median, p95 := stays[n/2], stays[n*95/100]
	// heartbeats every 30 s cut a stay to a whole number of intervals
	if median < 17*time.Minute || median > 22*time.Minute || p95 < 60*time.Minute {
		t.Errorf("stays: median %s (want ~20m), p95 %s (want a long tail, > 1h)", median, p95)
	}
	if rejoined < n*1/100 || rejoined > n*3/100 {
		t.Errorf("%d of %d viewers joined again, want ~2%%", rejoined, n)
	}
	if f := float64(counts["leave"]) / float64(n+rejoined); f < 0.75 || f > 0.85 {
		t.Errorf("leaves for %.2f of the stays, want ~0.8 (20%% vanish)", f)
	}
}

func TestViewersConfigValidate(t *testing.T) {
	good := ViewersConfig{Viewers: 1, ArrivalRate: 1, Heartbeat: time.Second, Watch: time.Second, Stages: Stages(1)}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*ViewersConfig){
		"viewers": func(c *ViewersConfig) { c.Viewers = 0 },
		"rate":    func(c *ViewersConfig) { c.ArrivalRate = 0 },
		"hb":      func(c *ViewersConfig) { c.Heartbeat = 0 },
		"watch":   func(c *ViewersConfig) { c.Watch = 0 },
		"vanish":  func(c *ViewersConfig) { c.Vanish = 1.5 },
		"rejoin":  func(c *ViewersConfig) { c.Rejoin = -0.1 },
		"stages":  func(c *ViewersConfig) { c.Stages = nil },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A mixed audience's joins carry their viewer's User-Agent and address, and
// the audience holds more than one of each.
func TestMixedJoinsCarryAgentAndAddress(t *testing.T) {
	type seen struct{ ua, xff string }
	got := make(chan seen, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.UserAgent(), r.Header.Get("X-Forwarded-For")}
	}))
	defer srv.Close()
	tgt := Target{Base: srv.URL, Mixed: true}
	agents, addrs := map[string]bool{}, map[string]bool{}
	for v := range 60 {
		if _, _, err := send(srv.Client(), tgt.Join("arn:aws:ivs:us-east-1:1:stage/a", "u", v)); err != nil {
			t.Fatal(err)
		}
		s := <-got
		if s.ua == "" || s.xff == "" {
			t.Fatalf("viewer %d sent %+v", v, s)
		}
		agents[s.ua], addrs[s.xff] = true, true
	}
	if len(agents) != len(audienceAgents) || len(addrs) != len(audienceAddrs) {
		t.Fatalf("%d agents and %d addresses over 60 viewers", len(agents), len(addrs))
	}
	if _, _, err := send(srv.Client(), (Target{Base: srv.URL}).Join("arn:aws:ivs:us-east-1:1:stage/a", "u", 1)); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.xff != "" || strings.Contains(s.ua, "Mozilla") {
		t.Fatalf("a plain target sent %+v", s)
	}
}
