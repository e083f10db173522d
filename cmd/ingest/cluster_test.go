package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// REDIS_URL=redis+cluster://… runs ingest on a real 3-master Redis Cluster:
// with one partition every key shares one hash tag, so each Lua step runs on
// the one node that holds it; joins, heartbeats, live reads and leaves work
// as on one server, and the events are in that node's stream.
func TestRunOnRedisCluster(t *testing.T) {
	cluster := testutil.StartRedisCluster(t, 3)
	base := startIngest(t, "vpc", map[string]string{"REDIS_URL": cluster.URL, "READ_API": "false", "JOIN_RATE": "off"}, nil)
	const stage = "arn:aws:ivs:us-east-1:123456789012:stage/cluster1"
	var joined struct {
		SessionID string `json:"session_id"`
		Viewers   int    `json:"viewers"`
	}
	if status := postJSON(t, base+"/v1/viewers/join", `{"stage_arn":"`+stage+`","user_id":"ana"}`, "", &joined); status != 200 || joined.Viewers != 1 {
		t.Fatalf("join on the cluster: %d %+v", status, joined)
	}
	if status := postJSON(t, base+"/v1/viewers/heartbeat", `{"session_id":"`+joined.SessionID+`"}`, "", nil); status != 200 {
		t.Fatalf("heartbeat on the cluster: %d", status)
	}
	resp, err := http.Get(base + "/v1/stages/" + url.PathEscape(stage) + "/viewers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("live viewers on the cluster: %d", resp.StatusCode)
	}
	var left struct{ Closed bool }
	if status := postJSON(t, base+"/v1/viewers/leave", `{"session_id":"`+joined.SessionID+`"}`, "", &left); status != 200 || !left.Closed {
		t.Fatalf("leave on the cluster: %d %+v", status, left)
	}
	rdb := cluster.Client(t)
	entries, err := rdb.XRange(context.Background(), events.NewKeys("vpc").Stream(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range entries {
		types = append(types, e.Values["type"].(string))
	}
	if got := strings.Join(types, ","); got != "join,leave" {
		t.Fatalf("stream on the cluster holds %s, want join,leave (the heartbeat is thinned)", got)
	}
}
