package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/webhooks"
)

func getenv(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestInvalidConfigIsRefusedByName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value string }{
		{"SNAPSHOT_INTERVAL", "7m"},  // does not divide a day
		{"SNAPSHOT_INTERVAL", "90s"}, // not whole minutes
		{"SNAPSHOT_INTERVAL", "30s"}, // below a minute
		{"SNAPSHOT_INTERVAL", "-5m"},
		{"SNAPSHOT_INTERVAL", "often"},
		{"SWEEP_INTERVAL", "0s"},
		{"SESSION_RETENTION", "forever"},
		{"SNAPSHOT_RETENTION", "90d"},
		{"PARTITIONS", "0"},
		{"PARTITIONS", "2000"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			var out bytes.Buffer
			// Nothing answers on these addresses: the values must be
			// refused before anything is dialled.
			err := run(context.Background(), []string{"snapshotter"}, getenv(map[string]string{
				tc.name:        tc.value,
				"REDIS_URL":    "redis://127.0.0.1:1/0",
				"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none",
			}), &out)
			if err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("run() = %v, want an error naming %s", err, tc.name)
			}
		})
	}
}

// TestRunRefusesChangedPartitions: the snapshotter started with another
// PARTITIONS than the deployment's exits with an error naming both.
func TestRunRefusesChangedPartitions(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := events.CheckPartitions(ctx, rdb, prefix, 12); err != nil {
		t.Fatal(err)
	}
	var out testutil.Buffer
	err := run(ctx, []string{"snapshotter"}, getenv(map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "PARTITIONS": "3",
		"DATABASE_URL": testutil.Schema(t), "METRICS_ADDR": "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
	}), &out)
	if !errors.Is(err, events.ErrPartitionsChanged) || !strings.Contains(err.Error(), "PARTITIONS=3") || !strings.Contains(err.Error(), "created with 12") {
		t.Fatalf("run with PARTITIONS=3 on a deployment of 12 = %v, want an error naming 3 and 12\n%s", err, out.String())
	}
}

func TestValidIntervalsAreAccepted(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"1m", "5m", "15m", "1h", "24h"} {
		if _, _, err := readSettings(getenv(map[string]string{"SNAPSHOT_INTERVAL": v}), io.Discard); err != nil {
			t.Errorf("SNAPSHOT_INTERVAL=%s: %v", v, err)
		}
	}
}

func TestRunServesOpsAndShutsDown(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t)
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	vars := map[string]string{
		"REDIS_URL":         testutil.RedisURL(t),
		"REDIS_PREFIX":      prefix,
		"DATABASE_URL":      testutil.Schema(t),
		"METRICS_ADDR":      addr,
		"SESSION_RETENTION": "8760h",
		"LOG_FORMAT":        "json",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"snapshotter"}, getenv(vars), &out) }()

	get := func(path string) (int, string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, out.String())
		default:
		}
		code, body, err := get("/readyz")
		return code == http.StatusOK, fmt.Sprint(code, body, err)
	})
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		_, body, err := get("/metrics")
		return strings.Contains(body, "viewpulse_snapshotter_sweeps_total"), fmt.Sprint(err)
	})
	if log := out.String(); !strings.Contains(log, `"snapshot_interval":"5m0s"`) || !strings.Contains(log, `"session_retention":"8760h"`) {
		t.Fatalf("start-up log does not show the effective configuration:\n%s", log)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run() after cancel = %v", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("run did not return within the shutdown deadline")
	}
}

func TestInvalidWebhookConfigIsRefusedByName(t *testing.T) {
	t.Parallel()
	const hook, goodSecret = "https://hooks.example.com/viewpulse", "0123456789abcdef"
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"WEBHOOK_URLS": "ftp://hooks.example.com/x", "WEBHOOK_SECRET": goodSecret}, "WEBHOOK_URLS"},
		{map[string]string{"WEBHOOK_URLS": hook + ",hooks.example.com/y", "WEBHOOK_SECRET": goodSecret}, "WEBHOOK_URLS"},
		{map[string]string{"WEBHOOK_URLS": hook + ",", "WEBHOOK_SECRET": goodSecret}, "WEBHOOK_URLS"},
		{map[string]string{"WEBHOOK_URLS": hook}, "WEBHOOK_SECRET"},
		{map[string]string{"WEBHOOK_URLS": hook, "WEBHOOK_SECRET": "short-secret"}, "WEBHOOK_SECRET"},
		{map[string]string{"GROUP_SCALE_UP_AT": "0"}, "GROUP_SCALE_UP_AT"},
		{map[string]string{"GROUP_SCALE_UP_AT": "1.2"}, "GROUP_SCALE_UP_AT"},
		{map[string]string{"GROUP_SCALE_UP_AT": "80%"}, "GROUP_SCALE_UP_AT"},
		{map[string]string{"GROUP_SCALE_UP_AT": "NaN"}, "GROUP_SCALE_UP_AT"},
		{map[string]string{"GROUP_ALERT_EVERY": "0s"}, "GROUP_ALERT_EVERY"},
	} {
		t.Run(fmt.Sprint(tc.vars), func(t *testing.T) {
			tc.vars["REDIS_URL"] = "redis://127.0.0.1:1/0"
			tc.vars["DATABASE_URL"] = "postgres://postgres@127.0.0.1:1/none"
			err := run(context.Background(), []string{"snapshotter"}, getenv(tc.vars), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run() = %v, want an error naming %s", err, tc.want)
			}
			if s := tc.vars["WEBHOOK_SECRET"]; s != "" && strings.Contains(err.Error(), s) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestWebhookConfigDefaultsAndValues(t *testing.T) {
	t.Parallel()
	s, _, err := readSettings(getenv(nil), io.Discard)
	if err != nil || s.hooks.URLs != nil || s.hooks.ScaleUpAt != 0.8 || s.hooks.AlertEvery != 5*time.Minute {
		t.Fatalf("defaults = %+v, %v", s.hooks, err)
	}
	s, _, err = readSettings(getenv(map[string]string{
		"WEBHOOK_URLS": "https://a.example/h, http://10.0.0.5:8000/h", "WEBHOOK_SECRET": "0123456789abcdef",
		"GROUP_SCALE_UP_AT": "1", "GROUP_ALERT_EVERY": "30s",
	}), io.Discard)
	if err != nil || fmt.Sprint(s.hooks.URLs) != "[https://a.example/h http://10.0.0.5:8000/h]" ||
		s.hooks.ScaleUpAt != 1 || s.hooks.AlertEvery != 30*time.Second || s.hooks.Secret != "0123456789abcdef" {
		t.Fatalf("settings = %+v, %v", s.hooks, err)
	}
}

// TestRunSendsWebhooks: a snapshotter with WEBHOOK_URLS runs the stage
// watcher and the dispatcher: a real join reaches a real endpoint as a
// signed stage.live, and the secret is not in the start-up log.
func TestRunSendsWebhooks(t *testing.T) {
	t.Parallel()
	const secret = "whsec_run_test_0123456789"
	rdb, prefix := testutil.Redis(t)
	got := make(chan webhooks.Event, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev webhooks.Event
		if err := webhooks.Verify(secret, r.Header.Get(webhooks.SignatureHeader), body, 0); err != nil {
			t.Errorf("receiver: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("receiver: %v", err)
		}
		got <- ev
	}))
	t.Cleanup(recv.Close)
	vars := map[string]string{
		"REDIS_URL":      testutil.RedisURL(t),
		"REDIS_PREFIX":   prefix,
		"DATABASE_URL":   testutil.Schema(t),
		"METRICS_ADDR":   "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
		"LOG_FORMAT":     "json",
		"WEBHOOK_URLS":   recv.URL + "/hook",
		"WEBHOOK_SECRET": secret,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"snapshotter"}, getenv(vars), &out) }()

	const stage = "arn:aws:ivs:us-east-1:123456789012:stage/webhooked"
	stream := events.NewStream(rdb, prefix, 2*time.Minute)
	if _, err := stream.Join(context.Background(), events.JoinRequest{Stage: stage, User: "u1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		var d webhooks.StageData
		if err := json.Unmarshal(ev.Data.(json.RawMessage), &d); err != nil || ev.Type != webhooks.StageLive || d.StageARN != stage || d.Viewers != 1 {
			t.Fatalf("event = %+v, data %+v, %v", ev, d, err)
		}
	case err := <-done:
		t.Fatalf("run returned early: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no webhook within 30s\n%s", out.String())
	}
	if log := out.String(); strings.Contains(log, secret) || !strings.Contains(log, `"webhook_secret":"***"`) {
		t.Fatalf("start-up log shows the secret or not its mask:\n%s", log)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run() after cancel = %v", err)
	}
}
