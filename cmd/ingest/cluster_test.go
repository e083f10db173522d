package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// REDIS_URL=redis+cluster://… runs ingest on a real 3-master Redis Cluster,
// with one partition (every key shares one hash tag) and with 12 (the
// stage's keys share its partition's): each Lua step runs on the one node
// that holds its keys; joins, heartbeats, live reads and leaves work as on
// one server, and the events are in the stage's partition's stream.
func TestRunOnRedisCluster(t *testing.T) {
	cluster := testutil.StartRedisCluster(t, 3)
	rdb := cluster.Client(t)
	const stage = "arn:aws:ivs:us-east-1:123456789012:stage/cluster1"
	for _, parts := range []int{1, 12} {
		t.Run(fmt.Sprint("PARTITIONS=", parts), func(t *testing.T) {
			prefix := fmt.Sprint("vpc", parts)
			base := startIngest(t, prefix, map[string]string{"REDIS_URL": cluster.URL, "READ_API": "false", "JOIN_RATE": "off",
				"PARTITIONS": fmt.Sprint(parts)}, nil)
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
			p := events.PartitionOf(stage, parts)
			entries, err := rdb.XRange(context.Background(), events.PartitionKeys(prefix, p).Stream(), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, e := range entries {
				types = append(types, e.Values["type"].(string))
			}
			if got := strings.Join(types, ","); got != "join,leave" {
				t.Fatalf("partition %d's stream on the cluster holds %s, want join,leave (the heartbeat is thinned)", p, got)
			}
			if got := rdb.HGet(context.Background(), events.NewKeys(prefix).Meta(), "partitions").Val(); got != fmt.Sprint(parts) {
				t.Fatalf("the cluster records %q partitions, want %d", got, parts)
			}
		})
	}
}
