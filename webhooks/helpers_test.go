package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
	"github.com/viewpulse/viewpulse/webhooks"
)

const secret = "whsec_test_0123456789abcdef"

// newOutbox returns the outbox of a fresh, migrated schema.
func newOutbox(t *testing.T) *store.Outbox {
	t.Helper()
	db, err := store.Open(context.Background(), testutil.Schema(t), store.Options{Migrate: true, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db.Outbox()
}

// fastDispatch is a dispatcher configuration whose waits are milliseconds.
func fastDispatch() webhooks.DispatcherConfig {
	return webhooks.DispatcherConfig{Secret: secret, Timeout: 2 * time.Second, Lease: 5 * time.Second,
		Poll: 20 * time.Millisecond, BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
}

// startDispatcher runs a dispatcher on outbox until the test ends and
// returns its registry.
func startDispatcher(t *testing.T, outbox *store.Outbox, cfg webhooks.DispatcherConfig) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	d := webhooks.NewDispatcher(outbox, cfg, slog.New(slog.DiscardHandler), reg)
	run(t, d.Run)
	return reg
}

// run runs loop until the test ends, and waits for it to return.
func run(t *testing.T, loop func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("loop returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// receiver is a real HTTP endpoint that verifies every request's signature
// and headers and records what it got.
type receiver struct {
	t *testing.T
	// answer gives the status for the attempt-th request of event id
	// (from 1); nil: 200.
	answer func(id string, attempt int) int
	delay  time.Duration // how long each request takes

	mu          sync.Mutex
	srv         *httptest.Server
	addr        string
	attempts    map[string]int // requests per event id
	delivered   map[string]int // 2xx answers per event id
	headerIDs   map[string][]string
	events      map[string]webhooks.Event
	headers     map[string]http.Header
	bodies      map[string][]byte
	inflight    map[string]int
	maxInflight int
	problems    []string
}

func newReceiver(t *testing.T, answer func(id string, attempt int) int) *receiver {
	t.Helper()
	r := &receiver{t: t, answer: answer, attempts: map[string]int{}, delivered: map[string]int{},
		headerIDs: map[string][]string{}, events: map[string]webhooks.Event{}, headers: map[string]http.Header{},
		bodies: map[string][]byte{}, inflight: map[string]int{}}
	r.addr = "127.0.0.1:0"
	r.start()
	t.Cleanup(r.stop)
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			t.Errorf("receiver: %s", p)
		}
	})
	return r
}

// URL is the endpoint's URL; it stays the same across stop and start.
func (r *receiver) URL() string { return "http://" + r.addr + "/hooks/viewpulse" }

// start listens (again) on the receiver's address.
func (r *receiver) start() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("listen %s: %v", r.addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	r.mu.Lock()
	r.srv, r.addr = srv, ln.Addr().String()
	r.mu.Unlock()
}

// stop closes the listener and every connection: requests are refused.
func (r *receiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var ev webhooks.Event
	err := webhooks.Verify(secret, req.Header.Get(webhooks.SignatureHeader), body, 0)
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	switch {
	case err != nil:
	case req.Method != http.MethodPost || req.URL.Path != "/hooks/viewpulse":
		err = fmt.Errorf("%s %s", req.Method, req.URL.Path)
	case req.Header.Get("Content-Type") != "application/json" || req.Header.Get("User-Agent") != "ViewPulse-Webhooks/1":
		err = fmt.Errorf("headers %v", req.Header)
	case req.Header.Get(webhooks.EventIDHeader) != ev.ID || !strings.HasPrefix(ev.ID, "evt_"):
		err = fmt.Errorf("event id header %q, body id %q", req.Header.Get(webhooks.EventIDHeader), ev.ID)
	}
	r.mu.Lock()
	if err != nil {
		r.problems = append(r.problems, err.Error())
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.attempts[ev.ID]++
	attempt := r.attempts[ev.ID]
	r.headerIDs[ev.ID] = append(r.headerIDs[ev.ID], req.Header.Get(webhooks.EventIDHeader))
	r.inflight[ev.ID]++
	r.maxInflight = max(r.maxInflight, r.inflight[ev.ID])
	r.mu.Unlock()

	time.Sleep(r.delay) // a slow endpoint, not a wait of the test
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(ev.ID, attempt)
	}

	r.mu.Lock()
	r.inflight[ev.ID]--
	if status/100 == 2 {
		r.delivered[ev.ID]++
		r.events[ev.ID], r.headers[ev.ID], r.bodies[ev.ID] = ev, req.Header.Clone(), body
	}
	r.mu.Unlock()
	w.WriteHeader(status)
}

// got reports whether event id was answered 2xx.
func (r *receiver) got(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered[id] > 0
}

// waitFor waits until event id has been answered 2xx.
func (r *receiver) waitFor(id string) {
	r.t.Helper()
	testutil.Eventually(r.t, 20*time.Second, func() (bool, string) {
		return r.got(id), "event " + id + " not delivered: " + r.summary()
	})
}

func (r *receiver) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("attempts %v, delivered %v", r.attempts, r.delivered)
}

// byType returns the events answered 2xx of one type, keyed by id.
func (r *receiver) byType(typ string) map[string]webhooks.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]webhooks.Event{}
	for id, ev := range r.events {
		if ev.Type == typ {
			out[id] = ev
		}
	}
	return out
}

// waitMetric waits until metric name (labels as in testutil.Metric) is want.
func waitMetric(t *testing.T, reg *prometheus.Registry, want float64, name string, labels ...string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		got := testutil.Metric(t, reg, name, labels...)
		return got == want, fmt.Sprintf("%s%v = %v, want %v", name, labels, got, want)
	})
}

// notify queues an event of typ for urls and returns its id.
func notify(t *testing.T, emit *webhooks.Emitter, typ string, data any) string {
	t.Helper()
	id := webhooks.NewID()
	if err := emit.Notify(context.Background(), webhooks.Event{ID: id, Type: typ, Data: data}); err != nil {
		t.Fatal(err)
	}
	return id
}
