package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

// The read API on a real streaming replica (DATABASE_READ_URL): reads answer
// from the replica, also while the primary is down; configuration writes go
// to the primary and reach the reads through replication; the replica's lag
// is exported as viewpulse_read_replica_lag_seconds.
func TestReadAPIOnStreamingReplica(t *testing.T) {
	primary, replica := testutil.StartPostgresReplica(t)
	ctx := context.Background()
	writeDB, err := store.Open(ctx, primary.URL, store.Options{Migrate: true, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(writeDB.Close)
	readDB, err := store.Open(ctx, replica.URL, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(readDB.Close)
	reg := ops.NewRegistry()
	h := newHarness(t, func(c *api.Config) { c.ReadDB, c.WriteDB, c.Registry = readDB, writeDB, reg })

	now := h.clock.Now()
	session(t, writeDB, "01KREPLICA00000000000000AA", "alice", stage, ptr(now.Add(-time.Hour)), ptr(now.Add(-time.Hour+90*time.Second)))
	testutil.WaitReplayed(t, primary, replica)
	if _, standby, err := readDB.ReplicaLag(ctx); err != nil || !standby {
		t.Fatalf("the read database is not a standby: %v", err)
	}
	if a := h.get("/v1/users/alice/history"); a.status != 200 || len(a.body["sessions"].([]any)) != 1 {
		t.Fatalf("history from the replica = %d %v", a.status, a.body)
	}

	// A configuration write lands on the primary (the replica refuses
	// writes) and is read back through replication.
	if a := h.put(stagePath(stage, ""), `{"stage_name":"Main hall","max_viewers":50}`); a.status != 201 {
		t.Fatalf("PUT stage = %d %v", a.status, a.body)
	}
	var name string
	if err := writeDB.Pool.QueryRow(ctx, "SELECT stage_name FROM stages WHERE stage_arn = $1", stage).Scan(&name); err != nil || name != "Main hall" {
		t.Fatalf("stage on the primary: %q %v", name, err)
	}
	testutil.WaitReplayed(t, primary, replica)
	if a := h.get(stagePath(stage, "")); a.status != 200 || a.body["stage_name"] != "Main hall" {
		t.Fatalf("GET stage from the replica = %d %v", a.status, a.body)
	}
	if lag := metric(t, h, "viewpulse_read_replica_lag_seconds"); lag < 0 || lag > 5 {
		t.Fatalf("replica lag gauge = %v", lag)
	}

	// The primary goes away: reads keep answering from the replica, writes
	// answer 503.
	primary.Stop()
	for _, path := range []string{"/v1/users/alice/history", "/v1/users/alice", stagePath(stage, "/stats?days=1"), stagePath(stage, "")} {
		if a := h.get(path); a.status != 200 {
			t.Errorf("GET %s with the primary down = %d %v", path, a.status, a.body)
		}
	}
	if a := h.put(stagePath(stage, ""), `{"stage_name":"Annex"}`); a.status != 503 || a.code() != "dependency_unavailable" {
		t.Errorf("PUT with the primary down = %d %v", a.status, a.body)
	}
}

// metric reads one unlabelled sample from the server's /metrics.
func metric(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(h.metrics(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}
