package events_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

func BenchmarkDecode(b *testing.B) {
	vals := map[string]any{"v": "1", "type": "join", "session": "01K0000000000000000000000", "user": "user-42",
		"stage": "arn:aws:ivs:us-east-1:123456789012:stage/abcDEF123", "participant": "p-1",
		"at": "1760000000000", "ua": "Mozilla/5.0", "ip": "203.0.113.9", "country": "DE"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Decode("1-0", vals); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoinStep is one join's atomic Redis step, callers in parallel, so
// the shared pipelines are exercised as under load.
func BenchmarkJoinStep(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := events.NewStream(rdb, prefix, 120*time.Second)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := s.Join(context.Background(), events.JoinRequest{Stage: stage, User: fmt.Sprintf("u%d", i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHeartbeatStep is one heartbeat's atomic Redis step over 1,000
// present sessions, callers in parallel.
func BenchmarkHeartbeatStep(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := events.NewStream(rdb, prefix, 120*time.Second)
	ctx := context.Background()
	sessions := make([]string, 1000)
	for i := range sessions {
		j, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: fmt.Sprintf("u%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		sessions[i] = j.Session
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Heartbeat(ctx, sessions[n.Add(1)%int64(len(sessions))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
