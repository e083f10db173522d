package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestRunRefusesChangedPartitions: ingest started with PARTITIONS=3 on a
// prefix first started with PARTITIONS=12 exits with an error naming both,
// and the running ingest of 12 goes on serving; 12 again is accepted.
func TestRunRefusesChangedPartitions(t *testing.T) {
	_, prefix := testutil.Redis(t)
	first := startIngest(t, prefix, map[string]string{"PARTITIONS": "12", "READ_API": "false"}, nil)
	env := map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "PARTITIONS": "3", "READ_API": "false",
		"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), "LOG_FORMAT": "json",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out testutil.Buffer
	err := run(ctx, nil, func(k string) string { return env[k] }, &out)
	if !errors.Is(err, events.ErrPartitionsChanged) || !strings.Contains(err.Error(), "PARTITIONS=3") || !strings.Contains(err.Error(), "created with 12") {
		t.Fatalf("run with PARTITIONS=3 on a deployment of 12 = %v, want an error naming 3 and 12\n%s", err, out.String())
	}
	if status := join(t, first); status != 200 {
		t.Fatalf("join on the ingest of 12 after the refused start = %d", status)
	}
	again := startIngest(t, prefix, map[string]string{"PARTITIONS": "12", "READ_API": "false"}, nil)
	if status := join(t, again); status != 200 {
		t.Fatalf("join on a second ingest of 12 = %d", status)
	}
}

// TestRunWarnsOfTheOldLayout: a stream of the layout before partitions
// still in Redis does not stop ingest, and its start-up log says so.
func TestRunWarnsOfTheOldLayout(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: prefix + ":{0}:events", Values: []string{"v", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	base := startIngest(t, prefix, map[string]string{"READ_API": "false"}, &logs)
	if status := join(t, base); status != 200 {
		t.Fatalf("join beside an old-layout stream = %d", status)
	}
	if !strings.Contains(logs.String(), "layout before partitions") || !strings.Contains(logs.String(), prefix+":{0}:events") {
		t.Fatalf("no warning of the old layout in the start-up log:\n%s", logs.String())
	}
}

// TestRunRefusesPartitionsOutOfRange: PARTITIONS outside 1 to 1024 is
// invalid configuration, refused by name before Redis is dialled.
func TestRunRefusesPartitionsOutOfRange(t *testing.T) {
	for _, v := range []string{"0", "-1", "1025", "2000", "many"} {
		env := map[string]string{"PARTITIONS": v, "REDIS_URL": "redis://127.0.0.1:1/0", "READ_API": "false"}
		err := run(context.Background(), nil, func(k string) string { return env[k] }, &testutil.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "PARTITIONS") || !strings.Contains(err.Error(), "1 to 1024") {
			t.Errorf("PARTITIONS=%s: %v, want an invalid-config error naming PARTITIONS and its range", v, err)
		}
	}
}
