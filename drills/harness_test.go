package drills

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// binDir holds ingest, projector and snapshotter built for this run.
var binDir string

func TestMain(m *testing.M) {
	testutil.RunWithBinaries(m, &binDir, "../cmd/ingest", "../cmd/projector", "../cmd/snapshotter")
}

// proc is one ViewPulse process of a drill.
type proc struct {
	t    *testing.T
	name string
	env  []string
	cmd  *exec.Cmd
	out  *testutil.Buffer
	addr string // where its HTTP (ingest) or ops (others) server listens
}

// startProc starts binary name with env and waits until its /readyz answers
// 200. It is killed when the test ends; its output is shown if the test fails.
func startProc(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: &testutil.Buffer{}, addr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))}
	key := "METRICS_ADDR"
	if name == "ingest" {
		key = "HTTP_ADDR"
	}
	p.env = append(os.Environ(), key+"="+p.addr, "LOG_FORMAT=json", "LOG_LEVEL=warn")
	if name == "ingest" {
		// Every drill's players come from 127.0.0.1, some as one user in a
		// loop: the rate limits (tested in cmd/ingest and api) stay out of it.
		p.env = append(p.env, "JOIN_RATE=off", "JOIN_RATE_PER_USER=off")
	}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, tail(p.out.String(), 3000))
		}
	})
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(filepath.Join(binDir, p.name))
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	testutil.Eventually(p.t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, p.name + " readyz " + resp.Status
	})
}

// kill sends SIGKILL: no drain, no goodbye.
func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// stop sends SIGTERM and fails the test if the process does not exit
// cleanly within its drain deadline.
func (p *proc) stop() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			p.t.Errorf("%s exited with %v", p.name, err)
		}
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
		_ = p.cmd.Process.Kill()
	}
	p.cmd = nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// client posts player requests to an ingest and remembers what was
// acknowledged.
type client struct {
	base string
	http *http.Client

	mu       sync.Mutex
	acked    map[string]string // session id -> user, for every 200 join
	statuses map[int]int
	retry    int // answers that carried Retry-After
}

func newClient(addr string) *client {
	return &client{base: "http://" + addr, http: &http.Client{Timeout: 10 * time.Second},
		acked: map[string]string{}, statuses: map[int]int{}}
}

func (c *client) post(path string, body any) (int, map[string]any) {
	b, _ := json.Marshal(body)
	resp, err := c.http.Post(c.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		c.count(0, false)
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	c.count(resp.StatusCode, resp.Header.Get("Retry-After") != "")
	return resp.StatusCode, out
}

func (c *client) count(status int, retry bool) {
	c.mu.Lock()
	c.statuses[status]++
	if retry {
		c.retry++
	}
	c.mu.Unlock()
}

func (c *client) join(stage, user string) (string, bool) {
	status, out := c.post("/v1/viewers/join", map[string]string{"stage_arn": stage, "user_id": user})
	if status != 200 {
		return "", false
	}
	sid, _ := out["session_id"].(string)
	c.mu.Lock()
	c.acked[sid] = user
	c.mu.Unlock()
	return sid, true
}

func (c *client) ackedSessions() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.acked))
	for k, v := range c.acked {
		out[k] = v
	}
	return out
}

func (c *client) status(code int) int { c.mu.Lock(); defer c.mu.Unlock(); return c.statuses[code] }

// viewers runs `workers` simulated players until ctx ends: each joins a
// stage, heartbeats a few times, then leaves or vanishes.
func (c *client) viewers(ctx context.Context, workers int, stages []string) {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ctx.Err() == nil; i++ {
				sid, ok := c.join(stages[r.IntN(len(stages))], fmt.Sprintf("w%d-u%d", w, r.IntN(50)))
				if !ok {
					pause(ctx, 20*time.Millisecond)
					continue
				}
				for h := r.IntN(4); h > 0 && ctx.Err() == nil; h-- {
					c.post("/v1/viewers/heartbeat", map[string]string{"session_id": sid})
				}
				if r.IntN(4) > 0 {
					c.post("/v1/viewers/leave", map[string]string{"session_id": sid})
				}
			}
		}()
	}
	wg.Wait()
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func stageARN(i int) string {
	return fmt.Sprintf("arn:aws:ivs:us-east-1:123456789012:stage/drill%d", i)
}

// row is what the model and the database agree on for one session.
type row struct {
	User, Stage        string
	Joined, Seen, Left int64 // Unix ms; 0 = NULL
	Reason             string
}

// model folds the stream, in order, into the rows a correct projection must
// hold. It is written independently of the projector: one pass, plain rules.
// With several partitions, their streams are folded one after the other:
// a session's events are all in its stage's partition.
func model(t *testing.T, rdb redis.UniversalClient, parts ...events.Keys) map[string]row {
	t.Helper()
	var msgs []redis.XMessage
	for _, k := range parts {
		m, err := rdb.XRange(context.Background(), k.Stream(), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m...)
	}
	out := map[string]row{}
	for _, m := range msgs {
		e, err := events.Decode(m.ID, m.Values)
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		r, seen := out[e.Session]
		if !seen {
			r = row{User: e.User, Stage: e.Stage}
		}
		at := e.At.UnixMilli()
		switch e.Type {
		case events.Join:
			if r.Joined == 0 || at < r.Joined {
				r.Joined = at
			}
			r.Seen = max(r.Seen, at)
		case events.Heartbeat:
			r.Seen = max(r.Seen, at)
		case events.Leave, events.Timeout:
			r.Left, r.Reason = e.LastSeen.UnixMilli(), string(e.Type)
			r.Seen = max(r.Seen, r.Left)
			if j := e.Joined.UnixMilli(); r.Joined == 0 || j < r.Joined {
				r.Joined = j
			}
		}
		out[e.Session] = r
	}
	return out
}

func dbRows(t *testing.T, pool *pgxpool.Pool) map[string]row {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT session_id, user_id, stage_arn,
		coalesce((extract(epoch FROM joined_at) * 1000)::bigint, 0),
		(extract(epoch FROM last_seen_at) * 1000)::bigint,
		coalesce((extract(epoch FROM left_at) * 1000)::bigint, 0), coalesce(end_reason, '')
		FROM viewer_sessions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]row{}
	for rows.Next() {
		var id string
		var r row
		if err := rows.Scan(&id, &r.User, &r.Stage, &r.Joined, &r.Seen, &r.Left, &r.Reason); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// assertModel waits until the database equals the model of the streams of
// parts.
func assertModel(t *testing.T, rdb redis.UniversalClient, pool *pgxpool.Pool, parts ...events.Keys) map[string]row {
	t.Helper()
	want := model(t, rdb, parts...)
	testutil.Eventually(t, 60*time.Second, func() (bool, string) {
		got := dbRows(t, pool)
		if len(got) != len(want) {
			return false, fmt.Sprintf("%d rows, model has %d", len(got), len(want))
		}
		for id, w := range want {
			if got[id] != w {
				return false, fmt.Sprintf("session %s: db %+v, model %+v", id, got[id], w)
			}
		}
		return true, ""
	})
	return want
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// metricValue reads one unlabelled sample from addr's /metrics.
func metricValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == name {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("%s not in /metrics", name)
	return 0
}
