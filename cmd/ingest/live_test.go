package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestRunEndsLiveStreamsOnShutdown: an SSE client connected to a running
// ingest is cut off when the server drains, so the drain finishes within its
// grace (run returns nil, not Shutdown's deadline error) and the client sees
// its stream end.
func TestRunEndsLiveStreamsOnShutdown(t *testing.T) {
	_, prefix := testutil.Redis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	env := map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "HTTP_ADDR": addr,
		"READ_API": "false", "LOG_FORMAT": "json",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &testutil.Buffer{}) }()
	waitOK(t, "http://"+addr+"/healthz")
	if status := join(t, "http://"+addr); status != 200 {
		t.Fatalf("join = %d", status)
	}

	resp, err := http.Get("http://" + addr + "/v1/live")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("before the first counts event: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"viewers":1`) {
				t.Fatalf("first counts %q", line)
			}
			break
		}
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); ended <- err }()

	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run returned %v after %s: the stream held the drain", err, time.Since(start))
	}
	if err := <-ended; err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("the stream ended with %v", err)
	}
}
