package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestRunFlushesPresenceOnShutdown: write-behind is on by default; a
// heartbeat answered from memory just before SIGTERM is written to Redis by
// the last flush after the drain (the interval, 1 s here, has not come).
func TestRunFlushesPresenceOnShutdown(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	env := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "HTTP_ADDR": addr,
		"LOG_FORMAT": "json", "READ_API": "false", "HEARTBEAT_SKIP": "false", "PRESENCE_FLUSH_INTERVAL": "1s"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &testutil.Buffer{}) }()
	waitOK(t, "http://"+addr+"/healthz")
	const stage = "arn:aws:ivs:us-east-1:1:stage/wb"
	post := func(path, body string) map[string]any {
		resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	sid := post("/v1/viewers/join", `{"stage_arn":"`+stage+`","user_id":"u"}`)["session_id"].(string)
	time.Sleep(20 * time.Millisecond)
	sent := time.Now()
	post("/v1/viewers/heartbeat", `{"session_id":"`+sid+`"}`)
	present := events.NewKeys(prefix).Present(stage)
	joinedAt, _ := rdb.ZScore(context.Background(), present, "u").Result()
	if int64(joinedAt) >= sent.UnixMilli() {
		t.Fatal("the heartbeat took its step: nothing left for the last flush")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	at, err := rdb.ZScore(context.Background(), present, "u").Result()
	if err != nil || int64(at) < sent.UnixMilli() {
		t.Fatalf("presence after shutdown %v (%v), want the heartbeat's (>= %d)", at, err, sent.UnixMilli())
	}
}
