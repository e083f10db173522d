package drills

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// kill -9 Redis (appendfsync always) while joins are acknowledged: after a
// restart every acknowledged join is in the stream, and reaches PostgreSQL.
func TestDrillRedisKill9LosesNothingAcknowledged(t *testing.T) {
	srv := testutil.StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	dbURL := testutil.Schema(t)
	env := map[string]string{"REDIS_URL": srv.URL, "REDIS_PREFIX": "drill", "DATABASE_URL": dbURL, "REDIS_TIMEOUT": "300ms"}
	ingest := startProc(t, "ingest", env)
	c := newClient(ingest.addr)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if _, ok := c.join(stageARN(w%3), fmt.Sprintf("k%d-%d", w, i)); !ok {
					pause(ctx, 5*time.Millisecond)
				}
			}
		}()
	}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		n := len(c.ackedSessions())
		return n >= 300, fmt.Sprintf("%d joins acknowledged", n)
	})
	srv.Kill(t) // SIGKILL, mid-stream
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		n := c.status(503)
		return n >= 20, fmt.Sprintf("%d answers 503 after the kill", n)
	})
	cancel()
	wg.Wait()
	acked := c.ackedSessions()

	srv.Start(t) // replays the append-only file
	rdb := redisClient(t, srv.URL)
	keys := events.NewKeys("drill")
	inStream := map[string]bool{}
	for id, r := range model(t, rdb, keys) {
		if r.Joined != 0 {
			inStream[id] = true
		}
	}
	lost := 0
	for sid := range acked {
		if !inStream[sid] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged joins are missing from the stream after kill -9", lost, len(acked))
	}
	startProc(t, "projector", env)
	rows := assertModel(t, rdb, openPool(t, dbURL), keys)
	for sid := range acked {
		if _, ok := rows[sid]; !ok {
			t.Fatalf("acknowledged session %s has no row", sid)
		}
	}
	t.Logf("kill -9: %d joins acknowledged, %d answered 503, all %d in the stream and in PostgreSQL",
		len(acked), c.status(503), len(acked))
}

// PostgreSQL cut off under load: ingest keeps answering, the backlog grows to
// STREAM_MAX_LEN, then ingest answers 503 with Retry-After; when the database
// is back the projector catches up and the rows equal the model.
func TestDrillPostgresOutageUnderLoad(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	dbURL := testutil.Schema(t)
	proxy, viaProxy := testutil.ProxyURL(t, dbURL)
	base := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "DATABASE_URL": dbURL}
	ingestEnv := merge(base, map[string]string{"STREAM_MAX_LEN": "600"})
	ingest := startProc(t, "ingest", ingestEnv)
	startProc(t, "projector", merge(base, map[string]string{"DATABASE_URL": viaProxy, "BATCH_SIZE": "100"}))
	c := newClient(ingest.addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.viewers(ctx, 6, []string{stageARN(1), stageARN(2)}) }()

	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		return c.status(200) > 100, fmt.Sprint(c.status(200), " accepted")
	})
	proxy.Stop()
	okAtCut := c.status(200)
	testutil.Eventually(t, 60*time.Second, func() (bool, string) {
		return c.status(503) > 0 && c.retry > 0, fmt.Sprintf("%d accepted since the cut, no 503 yet", c.status(200)-okAtCut)
	})
	if c.status(200)-okAtCut < 50 {
		t.Errorf("ingest accepted only %d writes while PostgreSQL was down", c.status(200)-okAtCut)
	}
	refusedAtRecovery := c.status(503)
	proxy.Start()
	okAtRecovery := c.status(200)
	testutil.Eventually(t, 60*time.Second, func() (bool, string) {
		return c.status(200) > okAtRecovery+100, "writes accepted again once the projector caught up"
	})
	cancel()
	<-done
	waitProjected(t, rdb, events.NewKeys(prefix).Stream())
	rows := assertModel(t, rdb, openPool(t, dbURL), events.NewKeys(prefix))
	for sid := range c.ackedSessions() {
		if _, ok := rows[sid]; !ok {
			t.Fatalf("acknowledged session %s has no row", sid)
		}
	}
	t.Logf("outage: %d writes accepted during the outage, %d refused with 503 at the bound, %d sessions in PostgreSQL",
		okAtRecovery-okAtCut, refusedAtRecovery, len(rows))
}

// Projectors and snapshotters killed (-9) and restarted at random moments
// while players come and go: the final rows equal the sequential model, and
// no session was closed twice.
func TestDrillWorkersKilledAtRandom(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	dbURL := testutil.Schema(t)
	env := map[string]string{"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix, "DATABASE_URL": dbURL,
		"HEARTBEAT_TIMEOUT": "2s", "SWEEP_INTERVAL": "200ms", "CLAIM_MIN_IDLE": "1s", "BATCH_SIZE": "50"}
	ingest := startProc(t, "ingest", env)
	workers := []*proc{
		startProc(t, "projector", env), startProc(t, "projector", env),
		startProc(t, "snapshotter", env), startProc(t, "snapshotter", env),
	}
	c := newClient(ingest.addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.viewers(ctx, 6, []string{stageARN(1), stageARN(2), stageARN(3)}) }()

	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for round := 0; round < 8; round++ {
		pause(context.Background(), time.Duration(200+r.IntN(600))*time.Millisecond)
		w := workers[r.IntN(len(workers))]
		w.kill()
		kills++
		pause(context.Background(), time.Duration(r.IntN(300))*time.Millisecond)
		w.start()
	}
	cancel()
	<-done
	keys := events.NewKeys(prefix)
	// Every viewer who vanished is swept within the timeout.
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		n, err := events.NewStream(rdb, prefix, time.Minute).OpenSessions(context.Background())
		return err == nil && n == 0, fmt.Sprintf("%d sessions still open (%v)", n, err)
	})
	waitProjected(t, rdb, keys.Stream())
	rows := assertModel(t, rdb, openPool(t, dbURL), keys)
	closes := map[string]int{}
	msgs, _ := rdb.XRange(context.Background(), keys.Stream(), "-", "+").Result()
	for _, m := range msgs {
		if typ := m.Values["type"]; typ == "leave" || typ == "timeout" {
			closes[m.Values["session"].(string)]++
		}
	}
	timeouts := 0
	for sid, n := range closes {
		if n != 1 {
			t.Errorf("session %s closed %d times", sid, n)
		}
		if rows[sid].Reason == "timeout" {
			timeouts++
		}
	}
	for sid, row := range rows {
		if row.Left == 0 {
			t.Errorf("session %s was never closed", sid)
		}
	}
	t.Logf("%d kills; %d sessions, %d closed by timeout, all rows equal the model", kills, len(rows), timeouts)
}

// Redis made slow (DEBUG SLEEP): ingest answers 503 within its timeout
// instead of hanging, recovers when Redis does, and leaks no goroutines.
func TestDrillSlowRedis(t *testing.T) {
	srv := testutil.StartRedisServer(t, "--enable-debug-command", "yes")
	ingest := startProc(t, "ingest", map[string]string{"REDIS_URL": srv.URL, "REDIS_PREFIX": "slow",
		"REDIS_TIMEOUT": "300ms", "DATABASE_URL": testutil.Schema(t)})
	c := newClient(ingest.addr)
	for i := 0; i < 50; i++ {
		if _, ok := c.join(stageARN(1), fmt.Sprint("warm", i)); !ok {
			t.Fatal("warm-up join failed")
		}
	}
	baseline := goroutines(t, ingest.addr)

	rdb := redisClient(t, srv.URL)
	slept := make(chan error, 1)
	go func() { slept <- rdb.Do(context.Background(), "DEBUG", "SLEEP", "3").Err() }()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) { // Redis is now asleep
		status, _ := c.post("/v1/viewers/join", map[string]string{"stage_arn": stageARN(1), "user_id": "probe"})
		return status == 503, fmt.Sprint("status ", status)
	})
	var wg sync.WaitGroup
	statuses := make([]int, 40)
	codes := make([]string, 40)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// spread over the whole sleep, so that calls keep reaching Redis's
			// sockets (not only its connection pool's queue)
			time.Sleep(time.Duration(i) * 75 * time.Millisecond)
			var out map[string]any
			statuses[i], out = c.post("/v1/viewers/join", map[string]string{"stage_arn": stageARN(1), "user_id": fmt.Sprint("slow", i)})
			if e, ok := out["error"].(map[string]any); ok {
				codes[i], _ = e["code"].(string)
			}
		}()
	}
	wg.Wait()
	refused := map[string]int{}
	for i, s := range statuses {
		switch s {
		case 503:
			refused[codes[i]]++
		case 200: // answered after Redis woke up
		default:
			t.Errorf("status %d while Redis slept (0 = the client gave up: a hang)", s)
		}
	}
	if err := <-slept; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		_, ok := c.join(stageARN(1), "after")
		return ok, "join after Redis woke up"
	})
	// Every join sent while Redis slept is in the stream exactly when it was
	// answered 200: a 503, whichever its code, recorded nothing, even once
	// Redis woke up and read the calls waiting on its sockets.
	entries, err := rdb.XRange(context.Background(), events.NewKeys("slow").Stream(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	inStream := map[string]bool{}
	for _, e := range entries {
		if u, _ := e.Values["user"].(string); e.Values["type"] == "join" {
			inStream[u] = true
		}
	}
	for i, s := range statuses {
		if u := fmt.Sprint("slow", i); inStream[u] != (s == 200) {
			t.Errorf("join of %s answered %d %s, in the stream: %v", u, s, codes[i], inStream[u])
		}
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		n := goroutines(t, ingest.addr)
		return n <= baseline+5, fmt.Sprintf("%d goroutines, %d before the slow spell", n, baseline)
	})
	t.Logf("slow Redis: of %d joins, 503 by code %v, none of them in the stream; goroutines back to baseline %d", len(statuses), refused, baseline)
}

// goroutines reads go_goroutines from a process's /metrics.
func goroutines(t *testing.T, addr string) int {
	t.Helper()
	return int(metricValue(t, addr, "go_goroutines"))
}

// waitProjected waits until every consumer group has acknowledged every entry.
func waitProjected(t *testing.T, rdb redis.UniversalClient, stream string) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() (bool, string) {
		groups, err := rdb.XInfoGroups(context.Background(), stream).Result()
		if err != nil || len(groups) == 0 {
			return false, fmt.Sprint("groups: ", groups, err)
		}
		for _, g := range groups {
			if g.Pending != 0 || g.Lag != 0 {
				return false, fmt.Sprintf("group %s: %d pending, lag %d", g.Name, g.Pending, g.Lag)
			}
		}
		return true, ""
	})
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
