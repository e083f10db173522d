package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

const stage = "arn:aws:ivs:us-east-1:123456789012:stage/abcDEF123"

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRunProjectsThenReplayMatches(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	dbURL := testutil.Schema(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	env := map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "DATABASE_URL": dbURL,
		"METRICS_ADDR": addr, "CONSUMER_NAME": "test", "BATCH_WAIT": "1ms", "LOG_FORMAT": "json",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenv(env), &out) }()

	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	s := events.NewStream(rdb, prefix, 2*time.Minute)
	var sessions []string
	for i := range 20 {
		j, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: fmt.Sprint("user-", i), IP: "203.0.113.5", Country: "DE"})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, j.Session)
	}
	for _, id := range sessions[:10] {
		if _, err := s.Leave(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	db, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		var n int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM viewer_sessions WHERE left_at IS NOT NULL").Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == 10, fmt.Sprintf("%d closed rows", n)
	})
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(metrics.String(), "viewpulse_projector_events_projected_total 30") {
		t.Errorf("metrics lack the projected count:\n%s", metrics.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `"consumer_name":"test"`) {
		t.Errorf("effective configuration not logged:\n%s", out.String())
	}

	var rep syncBuffer
	into := testutil.Schema(t)
	if err := run(context.Background(), []string{"replay", "--into", into}, getenv(env), &rep); err != nil {
		t.Fatalf("replay: %v\n%s", err, rep.String())
	}
	if !strings.Contains(rep.String(), `"equal": true`) {
		t.Fatalf("replay output:\n%s", rep.String())
	}
}

func TestRunRefusesInvalidConfiguration(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), nil, getenv(map[string]string{
		"BATCH_SIZE": "0", "CLAIM_MIN_IDLE": "soon", "STREAM_RETENTION": "-1h",
	}), &out)
	for _, name := range []string{"BATCH_SIZE", "CLAIM_MIN_IDLE", "STREAM_RETENTION"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("err = %v, want it to name %s", err, name)
		}
	}
	if err := run(context.Background(), []string{"replay"}, getenv(nil), &out); err == nil || !strings.Contains(err.Error(), "--into") {
		t.Errorf("replay without --into: %v", err)
	}
}
