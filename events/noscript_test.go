package events_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestStepsAfterScriptFlush: after Redis lost its scripts (a restart, SCRIPT
// FLUSH), the first join, heartbeat and leave through the shared pipelines
// load their script again and run, each exactly once, on one server and on
// every master of a cluster.
func TestStepsAfterScriptFlush(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		srv := testutil.StartRedisServer(t)
		opt, err := redis.ParseURL(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(opt)
		t.Cleanup(func() { _ = rdb.Close() })
		s, _ := partitionedOn(rdb, "vpn-"+testutil.RandomID(4))
		stepsAfterFlush(t, rdb, s, func() error { return rdb.ScriptFlush(context.Background()).Err() })
	})
	t.Run("cluster", func(t *testing.T) {
		rdb := testutil.StartRedisCluster(t, 3).Client(t)
		s, _ := partitionedOn(rdb, "vpn-"+testutil.RandomID(4))
		stepsAfterFlush(t, rdb, s, func() error { return rdb.ScriptFlush(context.Background()).Err() })
	})
}

func stepsAfterFlush(t *testing.T, rdb redis.UniversalClient, s *events.Stream, flush func() error) {
	ctx := context.Background()
	stages := stagesByPartition(parts, 1) // one stage on every partition, so every master
	var sessions []string
	for round := range 2 {
		if err := flush(); err != nil {
			t.Fatal(err)
		}
		for p, st := range stages {
			j, err := s.Join(ctx, events.JoinRequest{Stage: st[0], User: fmt.Sprintf("u%d-%d", round, p)})
			if err != nil {
				t.Fatalf("round %d: join on partition %d: %v", round, p, err)
			}
			if j.Viewers != int64(round+1) {
				t.Fatalf("round %d: partition %d counts %d viewers, want %d", round, p, j.Viewers, round+1)
			}
			sessions = append(sessions, j.Session)
		}
		if err := flush(); err != nil {
			t.Fatal(err)
		}
		for _, sid := range sessions[len(sessions)-len(stages):] {
			if n, err := s.Heartbeat(ctx, sid); err != nil || n != int64(round+1) {
				t.Fatalf("round %d: heartbeat %s: %d viewers, %v", round, sid, n, err)
			}
		}
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	for _, sid := range sessions {
		if closed, err := s.Leave(ctx, sid); err != nil || !closed {
			t.Fatalf("leave %s: closed %v, %v", sid, closed, err)
		}
	}
	// each step ran once: 2 joins, 2 heartbeats (every one is recorded by
	// default) and 2 leaves a stage
	for p, st := range stages {
		n, err := rdb.XLen(ctx, s.KeysOf(st[0]).Stream()).Result()
		if err != nil || n != 6 {
			t.Fatalf("partition %d stream holds %d events (%v), want 6", p, n, err)
		}
	}
}
