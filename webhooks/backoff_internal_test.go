package webhooks

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBackoffDoublesJitteredUpToTheCap: the wait after the n-th failure is
// within [w/2, w] of w = base·2^(n-1), at most the cap, also far out.
func TestBackoffDoublesJitteredUpToTheCap(t *testing.T) {
	d := NewDispatcher(nil, DispatcherConfig{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	want := map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 10: 2560 * time.Second, 11: time.Hour, 64: time.Hour, 1000: time.Hour}
	for attempt, w := range want {
		seen := map[time.Duration]bool{}
		for range 200 {
			got := d.backoff(attempt)
			if got < w/2 || got > w {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, got, w/2, w)
			}
			seen[got] = true
		}
		if len(seen) < 10 {
			t.Fatalf("backoff(%d): %d distinct waits in 200, want jitter", attempt, len(seen))
		}
	}
}
