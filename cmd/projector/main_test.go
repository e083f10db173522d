package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

const stage = "arn:aws:ivs:us-east-1:123456789012:stage/abcDEF123"

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
	var out testutil.Buffer
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
	waitClosedRows(t, dbURL, 10)
	// The rows are visible at the commit; the count follows the XACK.
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		var metrics bytes.Buffer
		_, _ = metrics.ReadFrom(resp.Body)
		resp.Body.Close()
		return strings.Contains(metrics.String(), "viewpulse_projector_events_projected_total 30"), "metrics lack the projected count 30"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `"consumer_name":"test"`) {
		t.Errorf("effective configuration not logged:\n%s", out.String())
	}

	var rep testutil.Buffer
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

// With four partitions: the projector process reads them all (one process
// holds every lease), `replay` rebuilds all of them (equal, one report per
// partition) or one (`--partition 2`: equal on that partition's sessions,
// its stream's entries only); a partition out of range and a changed
// PARTITIONS are refused.
func TestReplayPerPartition(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	dbURL := testutil.Schema(t)
	env := map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "DATABASE_URL": dbURL, "PARTITIONS": "4",
		"METRICS_ADDR": fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), "CONSUMER_NAME": "p4", "BATCH_WAIT": "1ms",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out testutil.Buffer
	go func() { done <- run(ctx, nil, getenv(env), &out) }()
	s := events.NewPartitionedStream(rdb, prefix, 2*time.Minute, 4)
	for i := range 40 {
		j, err := s.Join(ctx, events.JoinRequest{Stage: fmt.Sprintf("%s-%d", stage, i%8), User: fmt.Sprint("user-", i)})
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := s.Leave(ctx, j.Session); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitClosedRows(t, dbURL, 14)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}

	var all testutil.Buffer
	if err := run(context.Background(), []string{"replay", "--into", testutil.Schema(t)}, getenv(env), &all); err != nil {
		t.Fatalf("replay: %v\n%s", err, all.String())
	}
	if !strings.Contains(all.String(), `"equal": true`) || strings.Count(all.String(), `"Partition": `) != 4 ||
		!strings.Contains(all.String(), `"Entries": 54`) {
		t.Fatalf("replay of all partitions:\n%s", all.String())
	}
	var one testutil.Buffer
	if err := run(context.Background(), []string{"replay", "--into", testutil.Schema(t), "--partition", "2"}, getenv(env), &one); err != nil {
		t.Fatalf("replay --partition 2: %v\n%s", err, one.String())
	}
	want := rdb.XLen(context.Background(), events.PartitionKeys(prefix, 2).Stream()).Val()
	if !strings.Contains(one.String(), `"equal": true`) || !strings.Contains(one.String(), fmt.Sprintf(`"Entries": %d,`, want)) || want == 0 {
		t.Fatalf("replay of partition 2 (%d entries):\n%s", want, one.String())
	}
	if err := run(context.Background(), []string{"replay", "--into", testutil.Schema(t), "--partition", "4"}, getenv(env), &one); err == nil ||
		!strings.Contains(err.Error(), "--partition") {
		t.Errorf("replay --partition 4 of 4: %v", err)
	}
	env["PARTITIONS"] = "3"
	if err := run(context.Background(), nil, getenv(env), &one); err == nil || !strings.Contains(err.Error(), "PARTITIONS=3") ||
		!strings.Contains(err.Error(), "created with 4") {
		t.Errorf("PARTITIONS changed from 4 to 3: %v", err)
	}
}

// waitClosedRows waits until dbURL's viewer_sessions holds n closed rows.
func waitClosedRows(t *testing.T, dbURL string, n int) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		var got int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM viewer_sessions WHERE left_at IS NOT NULL").Scan(&got); err != nil {
			return false, err.Error()
		}
		return got == n, fmt.Sprintf("%d closed rows, want %d", got, n)
	})
}
