package drills

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestDrillIngestKill9WithWriteBehind: two ingest processes with presence
// write-behind (the default) share 200 viewers, half of whose heartbeats go
// to the victim only, the others' to either; the victim is killed with SIGKILL under load. No event is lost
// (every acknowledged join is in the stream, no heartbeat answered from
// memory appended one), and the presence lost is at most the last flush
// interval's: every heartbeat answered earlier than that before the kill
// is in Redis. The survivor keeps every session and the exact count.
func TestDrillIngestKill9WithWriteBehind(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	const flush = 250 * time.Millisecond
	env := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "READ_API": "false",
		"PRESENCE_WRITE_BEHIND": "true", "PRESENCE_FLUSH_INTERVAL": flush.String(), "HEARTBEAT_SKIP": "false"}
	victim, survivor := startProc(t, "ingest", env), startProc(t, "ingest", env)
	clients := []*client{newClient(victim.addr), newClient(survivor.addr)}
	const stageARN0 = "arn:aws:ivs:us-east-1:123456789012:stage/wbdrill"
	users := map[string]string{} // session -> user
	for i := range 200 {
		u := fmt.Sprint("wb", i)
		sid, ok := clients[i%2].join(stageARN0, u)
		if !ok {
			t.Fatalf("join %d failed", i)
		}
		users[sid] = u
	}
	sids := make([]string, 0, len(users))
	for sid := range users {
		sids = append(sids, sid)
	}

	// answered[sid] = when each heartbeat through the victim that was
	// answered 200 was sent (its presence is at least that), in order.
	var mu sync.Mutex
	answered := map[string][]time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += 8 {
				// the first half of the sessions heartbeat through the
				// victim only, the others through either
				j := i % len(sids)
				c := clients[0]
				if j >= len(sids)/2 {
					c = clients[(i/len(sids)+w)%2]
				}
				sid := sids[j]
				sent := time.Now()
				status, _ := c.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid})
				if status == 200 && c == clients[0] {
					mu.Lock()
					answered[sid] = append(answered[sid], sent)
					mu.Unlock()
				}
				pause(ctx, 2*time.Millisecond)
			}
		}()
	}
	time.Sleep(3*time.Second + time.Duration(rand.Int64N(int64(time.Second)))) // any phase of the flush
	hits := metricValue(t, victim.addr, "viewpulse_write_behind_hits_total")
	if hits < 100 {
		t.Fatalf("the victim answered only %v heartbeats from memory", hits)
	}
	killed := time.Now()
	victim.kill()
	time.Sleep(500 * time.Millisecond) // the survivor keeps serving
	cancel()
	wg.Wait()

	// No event lost, none added by a heartbeat answered from memory.
	got := model(t, rdb, events.NewKeys(prefix))
	for sid := range users {
		if r, ok := got[sid]; !ok || r.Joined == 0 {
			t.Fatalf("acknowledged join of %s missing from the stream", sid)
		} else if r.Left != 0 {
			t.Fatalf("session %s closed: %+v", sid, r)
		}
	}
	n, err := rdb.XLen(context.Background(), events.NewKeys(prefix).Stream()).Result()
	if err != nil || n != int64(len(users)) {
		t.Fatalf("stream holds %d entries (%v), want the %d joins only", n, err, len(users))
	}

	// Presence lost only for heartbeats answered within the last flush
	// interval (plus scheduling slack) before the kill.
	horizon := killed.Add(-flush - 150*time.Millisecond)
	present := events.NewKeys(prefix).Present(stageARN0)
	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for sid, times := range answered {
		score, err := rdb.ZScore(context.Background(), present, users[sid]).Result()
		if err != nil {
			t.Fatalf("presence of %s: %v", users[sid], err)
		}
		if last := times[len(times)-1]; int64(score) < last.UnixMilli() {
			lost++
		}
		// the latest heartbeat answered before the horizon must be in Redis
		for i := len(times) - 1; i >= 0; i-- {
			if at := times[i]; at.Before(horizon) {
				if int64(score) < at.UnixMilli() {
					t.Errorf("heartbeat of %s answered %v before the kill is not in Redis (presence %v ms older)",
						users[sid], killed.Sub(at).Round(time.Millisecond), at.UnixMilli()-int64(score))
				}
				break
			}
		}
	}
	// The survivor serves every session, and the count is exact.
	for sid := range users {
		if status, _ := clients[1].post("/v1/viewers/heartbeat", map[string]string{"session_id": sid}); status != 200 {
			t.Fatalf("heartbeat of %s through the survivor: %d", sid, status)
		}
	}
	count, err := rdb.ZCard(context.Background(), present).Result()
	if err != nil || count != int64(len(users)) {
		t.Fatalf("count %d (%v), want %d", count, err, len(users))
	}
	t.Logf("kill -9 with write-behind: %v heartbeats answered from memory by the victim, %d sessions' last presence lost (all answered within %v of the kill), no event lost",
		hits, lost, killed.Sub(horizon))
}
