package drills

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// On a real 3-master Redis Cluster with twelve partitions, two projectors
// share the partitions by leases, six each; one is killed with SIGKILL under
// load (no drain, its leases left to expire, its batch in flight pending);
// the other takes all twelve over and every acknowledged join, leave and
// timeout reaches PostgreSQL exactly as the model of the twelve streams
// says.
func TestDrillClusterProjectorKill9(t *testing.T) {
	cluster := testutil.StartRedisCluster(t, 3)
	rdb := cluster.Client(t)
	const prefix, parts = "kill9", 12
	dbURL := testutil.Schema(t)
	env := map[string]string{"REDIS_URL": cluster.URL, "REDIS_PREFIX": prefix, "PARTITIONS": strconv.Itoa(parts),
		"DATABASE_URL": dbURL, "HEARTBEAT_TIMEOUT": "2s", "SWEEP_INTERVAL": "200ms", "CLAIM_MIN_IDLE": "3s",
		"BATCH_SIZE": "50"}
	ingest := startProc(t, "ingest", env)
	startProc(t, "snapshotter", env)
	victim, heir := startProc(t, "projector", env), startProc(t, "projector", env)
	owned := func(p *proc) int { return int(metric(t, p.addr, "viewpulse_projector_partitions_owned")) }
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		a, b := owned(victim), owned(heir)
		return a == parts/2 && b == parts/2, fmt.Sprintf("partitions owned: %d and %d", a, b)
	})

	c := newClient(ingest.addr)
	stages := make([]string, 36)
	for i := range stages {
		stages[i] = stageARN(100 + i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.viewers(ctx, 6, stages) }()
	pause(context.Background(), 1500*time.Millisecond)
	victim.kill()
	killedAt := time.Now()
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		n := owned(heir)
		return n == parts, fmt.Sprintf("the heir owns %d partitions", n)
	})
	t.Logf("the heir read all %d partitions %s after the kill", parts, time.Since(killedAt).Round(100*time.Millisecond))
	pause(context.Background(), time.Second)
	cancel()
	<-done

	var keys []events.Keys
	for p := range parts {
		keys = append(keys, events.PartitionKeys(prefix, p))
	}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		n, err := events.NewPartitionedStream(rdb, prefix, time.Minute, parts).OpenSessions(context.Background())
		return err == nil && n == 0, fmt.Sprintf("%d sessions still open (%v)", n, err)
	})
	used := 0
	for _, k := range keys {
		if rdb.XLen(context.Background(), k.Stream()).Val() > 0 {
			used++
			waitProjected(t, rdb, k.Stream())
		}
	}
	if used != parts {
		t.Fatalf("the load reached %d of %d partitions", used, parts)
	}
	rows := assertModel(t, rdb, openPool(t, dbURL), keys...)
	acked := c.ackedSessions()
	for sid := range acked {
		if _, ok := rows[sid]; !ok {
			t.Errorf("acknowledged session %s has no row", sid)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no join was acknowledged: the drill checked nothing")
	}
	t.Logf("%d acknowledged joins, %d sessions, all rows equal the model of %d streams", len(acked), len(rows), parts)
}

// metric reads one unlabelled sample from a process's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, v)
			}
			return f
		}
	}
	return -1
}
