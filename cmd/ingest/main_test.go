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

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// syncBuffer is a log sink safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRunServesAndDrains(t *testing.T) {
	_, prefix := testutil.Redis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	env := map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "HTTP_ADDR": addr,
		"API_KEYS": "secret-key", "LOG_FORMAT": "json",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &out) }()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	resp, err := http.Post("http://"+addr+"/v1/viewers/join", "application/json",
		strings.NewReader(`{"stage_arn":"arn:aws:ivs:us-east-1:1:stage/x","user_id":"u"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("join through run: %v %v", resp, err)
	}
	resp.Body.Close()
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
	env := map[string]string{"HEARTBEAT_TIMEOUT": "soon", "TRUSTED_PROXIES": "10.0.0.0/8,not-a-cidr"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "HEARTBEAT_TIMEOUT") || !strings.Contains(err.Error(), "TRUSTED_PROXIES") {
		t.Fatalf("err = %v", err)
	}
}
