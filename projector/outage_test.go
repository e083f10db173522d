package projector

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// PostgreSQL black-holed (packets held, not refused) under a running
// projector: the backlog gauge follows the real backlog from Redis while the
// batch is stuck, the stuck batch is logged with its age and ended by its
// deadline, and after recovery the gauge returns to 0 with nothing lost.
func TestBlackholedPostgresIsVisible(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy, proxyURL := testutil.ProxyURL(t, e.dbURL)
	viaProxy := openDB(t, proxyURL)
	m := NewMetrics(prometheus.NewRegistry())
	logs := &testutil.Buffer{}
	p := e.projector("p", viaProxy, func(c *Config) {
		c.BatchSize, c.Block, c.MaintainEvery = 40, 20*time.Millisecond, 50*time.Millisecond
		c.StallWarning, c.BatchTimeout = 300*time.Millisecond, 2*time.Second
		c.Metrics, c.Log = m, slog.New(slog.NewJSONHandler(logs, nil))
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, time.Second) }()
	t.Cleanup(func() { cancel(); <-ran })

	backlog := func() (gauge, real int64) {
		pending, lag := e.group()
		return int64(promtest.ToFloat64(m.Backlog)), pending + lag
	}
	e.workload(21, 200)
	testutil.Eventually(t, 30*time.Second, e.drained)

	proxy.Blackhole()
	e.workload(22, 300)
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		g, r := backlog()
		return g > 0 && g == r, fmt.Sprintf("backlog gauge %d, real backlog %d", g, r)
	})
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "batch stalled in PostgreSQL"), "no stall warning yet"
	})
	testutil.Eventually(t, 30*time.Second, func() (bool, string) { // the deadline ends the stuck batch
		return strings.Contains(logs.String(), "context deadline exceeded"), "the stuck batch has not ended"
	})
	during, _ := backlog()

	proxy.Restore()
	testutil.Eventually(t, 60*time.Second, e.drained)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		g, r := backlog()
		return g == 0 && r == 0, fmt.Sprintf("backlog gauge %d, real backlog %d after recovery", g, r)
	})
	e.assertMatchesModel(e.db)
	t.Logf("black hole: backlog gauge %d during, 0 after; %v stall warnings", during, promtest.ToFloat64(m.Stalls))
}
