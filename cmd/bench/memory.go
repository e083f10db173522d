package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/loadgen"
)

// memoryPhase makes o.viewers viewers present on 200 stages (through the
// same atomic join step ingest uses, in-process, which is faster than HTTP
// and writes the same keys), then sums MEMORY USAGE of the live-state keys.
// The used_memory delta less the stream is a cross-check; it is noisy on a
// shared Redis.
func memoryPhase(ctx context.Context, e *env, r *Results) error {
	prefix := "vpbench-" + randomID()
	e.prefixes = append(e.prefixes, prefix)
	s := events.NewStream(e.rdb, prefix, 120*time.Second)
	stages := loadgen.Stages(200)
	before, err := usedMemory(ctx, e)
	if err != nil {
		return err
	}
	var next atomic.Int64
	p := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError()
	for range 64 {
		p.Go(func(ctx context.Context) error {
			for i := int(next.Add(1)) - 1; i < e.o.viewers; i = int(next.Add(1)) - 1 {
				if _, err := s.Join(ctx, events.JoinRequest{
					Stage: stages[i%len(stages)], User: "user-" + strconv.Itoa(1_000_000+i), Participant: "p" + strconv.Itoa(i),
					UA: "Mozilla/5.0 (X11; Linux x86_64)", IP: "203.0.113.7", Country: "DE",
				}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	t0 := time.Now()
	if err := p.Wait(); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "  %d viewers joined in %s\n", e.o.viewers, time.Since(t0).Round(time.Millisecond))
	n, err := s.Count(ctx, stages[0])
	if err != nil {
		return err
	}
	if want := int64((e.o.viewers + len(stages) - 1) / len(stages)); n != want {
		return fmt.Errorf("stage 0 counts %d viewers, want %d", n, want)
	}
	after, err := usedMemory(ctx, e)
	if err != nil {
		return err
	}
	k := s.Keys()
	keys := append(k.AllSessions(), k.Stages(), k.StageNames())
	for _, st := range stages {
		keys = append(keys, k.Present(st), k.Members(st))
		for h := t0.Truncate(time.Hour); !h.After(time.Now()); h = h.Add(time.Hour) {
			keys = append(keys, k.Peak(st, h))
		}
	}
	live, err := memoryUsage(ctx, e, keys)
	if err != nil {
		return err
	}
	stream, err := memoryUsage(ctx, e, []string{k.Stream()})
	if err != nil {
		return err
	}
	xlen, err := e.rdb.XLen(ctx, k.Stream()).Result()
	if err != nil {
		return fmt.Errorf("xlen: %w", err)
	}
	r.RedisViewers = e.o.viewers
	r.SessionIDLen = events.SessionIDLen
	r.RedisLiveBytes = live
	r.RedisBytesPerViewer = float64(live) / float64(e.o.viewers)
	r.RedisUsedDeltaLessStreamPerViewer = float64(after-before-stream) / float64(e.o.viewers)
	r.RedisStreamBytesPerEvent = float64(stream) / float64(max(xlen, 1))
	fmt.Fprintf(e.out, "  live state %d bytes: %.0f per viewer (used_memory delta less stream: %.0f); stream %d bytes, %d entries: %.0f bytes per join event\n",
		live, r.RedisBytesPerViewer, r.RedisUsedDeltaLessStreamPerViewer, stream, xlen, r.RedisStreamBytesPerEvent)
	e.dropPrefix(ctx, prefix)
	return nil
}

// memoryUsage sums MEMORY USAGE … SAMPLES 0 (exact) of keys; missing keys
// count 0.
func memoryUsage(ctx context.Context, e *env, keys []string) (int64, error) {
	var total int64
	for _, key := range keys {
		n, err := e.rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil && err.Error() != "redis: nil" {
			return 0, fmt.Errorf("memory usage %s: %w", key, err)
		}
		total += n
	}
	return total, nil
}

func usedMemory(ctx context.Context, e *env) (int64, error) {
	info, err := e.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO memory has no used_memory")
}
