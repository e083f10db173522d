package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

func TestRunServesAndDrains(t *testing.T) {
	_, prefix := testutil.Redis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	env := map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "HTTP_ADDR": addr,
		"API_KEYS": "secret-key", "LOG_FORMAT": "json", "DATABASE_URL": testutil.Schema(t),
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &out) }()
	waitOK(t, "http://"+addr+"/readyz")
	resp, err := http.Post("http://"+addr+"/v1/viewers/join", "application/json",
		strings.NewReader(`{"stage_arn":"arn:aws:ivs:us-east-1:1:stage/x","user_id":"u"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("join through run: %v %v", resp, err)
	}
	resp.Body.Close()
	// The read API is on: migrations ran (readyz was 200) and the key opens it.
	if status := get(t, "http://"+addr+"/v1/stages/arn%3Aaws%3Aivs%3Aus-east-1%3A1%3Astage%2Fx/stats", "secret-key"); status != 200 {
		t.Fatalf("stats with the key = %d", status)
	}
	if status := get(t, "http://"+addr+"/v1/stages", ""); status != 401 {
		t.Fatalf("stages without the key = %d", status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not drain within its grace")
	}
	logs := out.String()
	if !strings.Contains(logs, `"redis_prefix":"`+prefix+`"`) || strings.Contains(logs, "secret-key") {
		t.Fatalf("start-up log must show the config with secrets masked:\n%s", logs)
	}
}

func TestRunRefusesInvalidConfig(t *testing.T) {
	env := map[string]string{"HEARTBEAT_TIMEOUT": "soon", "TRUSTED_PROXIES": "10.0.0.0/8,not-a-cidr", "PRESENCE_FLUSH_INTERVAL": "5s"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "HEARTBEAT_TIMEOUT") || !strings.Contains(err.Error(), "TRUSTED_PROXIES") ||
		!strings.Contains(err.Error(), "PRESENCE_FLUSH_INTERVAL") {
		t.Fatalf("err = %v", err)
	}
}

// get answers the status of GET url, with a bearer key when key is set.
func get(t *testing.T, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startRun runs ingest with env until the test ends and returns its address
// once /healthz answers.
func startRun(t *testing.T, env map[string]string) string {
	t.Helper()
	_, prefix := testutil.Redis(t)
	return startIngest(t, prefix, env, nil)
}

// startIngest runs ingest on prefix with env (the test's Redis and a free
// port added) until the test ends, its logs into logs when not nil, and
// returns its base URL once /healthz answers.
func startIngest(t *testing.T, prefix string, env map[string]string, logs *testutil.Buffer) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	full := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "HTTP_ADDR": addr, "LOG_FORMAT": "json"}
	for k, v := range env {
		full[k] = v
	}
	if logs == nil {
		logs = &testutil.Buffer{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return full[k] }, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	waitOK(t, "http://"+addr+"/healthz")
	return "http://" + addr
}

func join(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Post(base+"/v1/viewers/join", "application/json",
		strings.NewReader(`{"stage_arn":"arn:aws:ivs:us-east-1:1:stage/x","user_id":"u"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunReadAPIModes: with PostgreSQL or only its replica down, players are
// served and the read routes answer 503; with READ_API=false PostgreSQL is
// never needed.
func TestRunReadAPIModes(t *testing.T) {
	closed := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", testutil.FreePort(t))
	const stats = "/v1/stages/arn%3Aaws%3Aivs%3Aus-east-1%3A1%3Astage%2Fx/stats"
	cases := []struct {
		name string
		env  map[string]string
		want map[string]int // GET path -> status, after a join that must succeed
	}{
		{"postgres down", map[string]string{"DATABASE_URL": closed},
			map[string]int{stats: 503, "/readyz": 503, "/v1/stages/arn%3Aaws%3Aivs%3Aus-east-1%3A1%3Astage%2Fx/viewers": 200}},
		{"replica down", map[string]string{"DATABASE_URL": testutil.Schema(t), "DATABASE_READ_URL": closed},
			map[string]int{"/v1/users/u/history": 503, "/readyz": 503}},
		{"read API off", map[string]string{"READ_API": "false", "DATABASE_URL": closed},
			map[string]int{"/readyz": 200, "/v1/stages": 200, stats: 404}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := startRun(t, tc.env)
			if status := join(t, base); status != 200 {
				t.Fatalf("join = %d", status)
			}
			for path, want := range tc.want {
				if status := get(t, base+path, ""); status != want {
					t.Errorf("GET %s = %d, want %d", path, status, want)
				}
			}
		})
	}
}

// TestRunBoundsHeaderBytes: request headers over 64 KiB are refused with
// 431 before any handler runs; a request just under it is served.
func TestRunBoundsHeaderBytes(t *testing.T) {
	base := startRun(t, map[string]string{"READ_API": "false"})
	send := func(n int) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/healthz", nil)
		req.Header.Set("X-Padding", strings.Repeat("p", n))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := send(60 << 10); status != http.StatusOK {
		t.Errorf("60 KiB of headers = %d, want 200", status)
	}
	if status := send(100 << 10); status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB of headers = %d, want 431", status)
	}
}

// waitOK waits until GET url answers 200.
func waitOK(t *testing.T, url string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}
