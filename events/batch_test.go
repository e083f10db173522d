package events_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// Many callers at once: some send their own call (a free pipeline slot,
// nobody queued), the rest queue for the loops. Every call is answered and
// every join counted once.
func TestConcurrentStepsAllAnswered(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	s := events.NewStream(rdb, prefix, 120*time.Second)
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
}
