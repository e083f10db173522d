package events_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// Many callers at once: some send their own call (a free pipeline slot,
// nobody queued), the rest queue for the loops, or, with a flush delay, wait
// in groups. Every call is answered and every join counted once.
func TestConcurrentStepsAllAnswered(t *testing.T) {
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) {
			rdb, prefix := testutil.Redis(t)
			s := events.NewStream(rdb, prefix, 120*time.Second)
			s.SetFlushDelay(delay)
			const callers, each = 128, 20
			var wg sync.WaitGroup
			var failed atomic.Int64
			for g := range callers {
				wg.Go(func() {
					for i := range each {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						_, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: fmt.Sprintf("u%d-%d", g, i)})
						cancel()
						if err != nil && failed.Add(1) == 1 {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Fatalf("%d of %d joins failed", n, callers*each)
			}
			n, err := s.Count(context.Background(), stage)
			if err != nil || n != callers*each {
				t.Fatalf("count %d (%v), want %d", n, err, callers*each)
			}
		})
	}
}

// pipelines counts the pipelines a client sends and the commands in them.
type pipelines struct{ n, cmds atomic.Int64 }

func (p *pipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (p *pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (p *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.n.Add(1)
		p.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// With a flush delay, calls that come within it of the last pipeline share
// the next one: 50 joins at once, right after a first, go in a few
// pipelines instead of 50, and each is answered with its own session.
func TestFlushDelayGroupsCalls(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	count := &pipelines{}
	rdb.AddHook(count)
	s := events.NewStream(rdb, prefix, 120*time.Second)
	s.SetFlushDelay(200 * time.Millisecond) // long, so that a slow machine still starts every caller within it
	ctx := context.Background()
	if _, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: "first"}); err != nil {
		t.Fatal(err)
	}
	before := count.n.Load()
	const callers = 50
	sessions := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			j, err := s.Join(ctx, events.JoinRequest{Stage: stage, User: fmt.Sprint("u", i)})
			if err != nil {
				t.Error(err)
				return
			}
			sessions[i] = j.Session
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := count.n.Load() - before; n > callers/5 {
		t.Fatalf("%d joins took %d pipelines: the delay did not group them", callers, n)
	}
	seen := map[string]bool{}
	for i, sid := range sessions {
		if sid == "" || seen[sid] {
			t.Fatalf("join %d answered session %q: not its own", i, sid)
		}
		seen[sid] = true
	}
	if n, err := s.Count(ctx, stage); err != nil || n != callers+1 {
		t.Fatalf("count %d (%v), want %d", n, err, callers+1)
	}
	t.Logf("%d joins in %d pipelines", callers, count.n.Load()-before)
}
