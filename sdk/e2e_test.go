package sdk_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

// These tests run the SDK in a real headless Chromium against the real
// ingest, projector and snapshotter: a page on one origin (127.0.0.1:A)
// loads /sdk/v1/viewpulse.js from ingest on another (localhost:P, a TCP proxy
// that can cut the network, then an HTTP recorder that writes the
// transcript), so CORS is exercised; the session's row in PostgreSQL tells
// how it ended. The snapshotter sweeps silent viewers every 500 ms, so a
// beacon that never arrived would end the row as a timeout.

// binDir holds ingest, projector and snapshotter built for this run.
var binDir string

func TestMain(m *testing.M) {
	testutil.RunWithBinaries(m, &binDir, "../cmd/ingest", "../cmd/projector", "../cmd/snapshotter")
}

const stageARN = "arn:aws:ivs:us-east-1:123456789012:stage/sdke2e"

// TestBrowserBeaconClosesSession: the page joins, heartbeats at least twice,
// is closed; its pagehide beacon (text/plain, no preflight) closes the row
// as a leave.
func TestBrowserBeaconClosesSession(t *testing.T) {
	for _, auth := range []string{"off", "token"} {
		t.Run("VIEWER_AUTH="+auth, func(t *testing.T) {
			e := newE2E(t, auth, 4*time.Second) // heartbeats every second
			tab := e.open("alice")
			e.waitFor("two heartbeats", func() bool { return e.tr.count("POST", "/v1/viewers/heartbeat", 200) >= 2 })
			sid := tab.sessionID()
			tab.close()
			e.waitFor("the beacon", func() bool { return e.tr.count("POST", "/v1/viewers/leave", 200) == 1 })
			reason := e.waitClosed(sid)
			e.tr.print(t)

			if reason != "leave" {
				t.Fatalf("session %s ended with %q, want leave (the beacon arrived)", sid, reason)
			}
			joins := e.tr.find("POST", "/v1/viewers/join")
			if len(joins) != 1 || joins[0].origin != e.pageOrigin || joins[0].allowOrigin != e.pageOrigin {
				t.Errorf("joins: %+v, want one from %s allowed by CORS", joins, e.pageOrigin)
			}
			leave := e.tr.find("POST", "/v1/viewers/leave")[0]
			if !strings.HasPrefix(leave.contentType, "text/plain") {
				t.Errorf("beacon Content-Type %q, want text/plain", leave.contentType)
			}
			if n := len(e.tr.find("OPTIONS", "/v1/viewers/leave")); n != 0 {
				t.Errorf("%d preflights of the leave: a text/plain beacon needs none", n)
			}
			if n := e.rows("alice"); n != 1 {
				t.Errorf("%d sessions for alice, want 1", n)
			}
		})
	}
}

// TestBrowserRecoversFromNetworkCut: the network to ingest is cut (packets
// dropped) for longer than one heartbeat interval, less than the timeout,
// then restored: the SDK recovers in the same session, and PostgreSQL ends
// with one session for the viewer, closed by the beacon.
func TestBrowserRecoversFromNetworkCut(t *testing.T) {
	for _, auth := range []string{"off", "token"} {
		t.Run("VIEWER_AUTH="+auth, func(t *testing.T) {
			e := newE2E(t, auth, 8*time.Second) // heartbeats every 2 s
			interval := 2 * time.Second
			tab := e.open("bob")
			e.waitFor("two heartbeats", func() bool { return e.tr.count("POST", "/v1/viewers/heartbeat", 200) >= 2 })
			sid := tab.sessionID()

			e.proxy.Blackhole()
			cut := time.Now()
			e.tr.note("network cut (black hole)")
			e.waitFor("a failed request, one interval into the cut", func() bool {
				return tab.errors() > 0 && time.Since(cut) > interval
			})
			e.proxy.Restore()
			restored := time.Now()
			e.tr.note(fmt.Sprintf("network restored after %.1fs; the page saw %d failed requests", restored.Sub(cut).Seconds(), tab.errors()))
			e.waitFor("a heartbeat after the restore", func() bool {
				return e.tr.countSince("POST", "/v1/viewers/heartbeat", 200, restored) >= 1 && tab.state() == "watching"
			})
			if got := tab.sessionID(); got != sid {
				t.Errorf("session %s after the cut, want %s continued", got, sid)
			}
			tab.close()
			reason := e.waitClosed(sid)
			e.tr.print(t)
			if reason != "leave" {
				t.Errorf("session ended with %q, want leave", reason)
			}
			if n := e.rows("bob"); n != 1 {
				t.Errorf("%d sessions for bob, want 1 (no duplicate after the cut)", n)
			}
		})
	}
}

// e2e is one test's ViewPulse (ingest, projector, snapshotter on a fresh
// prefix and schema), the network path to it and a browser.
type e2e struct {
	t          *testing.T
	auth       string
	dbURL      string
	ingest     string // host:port
	proxy      *testutil.Proxy
	endpoint   string // what the page calls: http://localhost:<proxy port>
	pageOrigin string
	pageURL    string
	tr         *transcript
	browser    context.Context
}

func newE2E(t *testing.T, auth string, timeout time.Duration) *e2e {
	t.Helper()
	chromium := testutil.Chromium(t)
	e := &e2e{t: t, auth: auth, dbURL: testutil.Schema(t), tr: &transcript{start: time.Now()}}
	page, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.pageOrigin = "http://" + page.Addr().String()

	_, prefix := testutil.Redis(t) // its keys are deleted when the test ends
	common := map[string]string{
		"REDIS_URL": testutil.RedisURL(t), "REDIS_PREFIX": prefix,
		"DATABASE_URL": e.dbURL, "HEARTBEAT_TIMEOUT": timeout.String(),
	}
	ingestEnv := merge(common, map[string]string{
		"CORS_ORIGINS": e.pageOrigin, "JOIN_RATE": "off", "JOIN_RATE_PER_USER": "off", "VIEWER_AUTH": auth,
	})
	if auth == "token" {
		ingestEnv["VIEWER_TOKEN_SIGNING_KEY"] = signingKey(t)
		ingestEnv["API_KEYS"] = "ops-secret"
	}
	e.ingest = startProc(t, "ingest", ingestEnv)
	startProc(t, "projector", common)
	startProc(t, "snapshotter", merge(common, map[string]string{"SWEEP_INTERVAL": "500ms"}))

	rec := httptest(t, e.tr.handler("http://"+e.ingest))
	e.proxy = testutil.StartProxy(t, rec)
	_, port, _ := net.SplitHostPort(e.proxy.Addr)
	e.endpoint = "http://localhost:" + port

	mux := http.NewServeMux()
	mux.HandleFunc("GET /player.html", e.servePage)
	mux.HandleFunc("GET /token", e.serveToken)
	srv := &http.Server{Handler: mux}
	go srv.Serve(page)
	t.Cleanup(func() { srv.Close() })
	e.pageURL = e.pageOrigin + "/player.html"

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	if err := chromedp.Do(browser); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start %s: %v", chromium, err)
	}
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	e.browser = browser
	return e
}

// servePage serves examples/player.html: a <video> playing a generated
// test pattern (a canvas stream), counted by the SDK it loads from ingest's
// origin.
func (e *e2e) servePage(w http.ResponseWriter, r *http.Request) {
	http.ServeFile(w, r, "../examples/player.html")
}

// serveToken is the website's backend: it mints a viewer token with its API
// key (POST /v1/tokens) for its player.
func (e *e2e) serveToken(w http.ResponseWriter, r *http.Request) {
	body, _ := json.Marshal(map[string]any{"user_id": r.URL.Query().Get("user"), "stage_arn": stageARN, "ttl_seconds": 300})
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.ingest+"/v1/tokens", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer ops-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		http.Error(w, fmt.Sprint("mint: ", resp.Status, err), http.StatusBadGateway)
		return
	}
	e.tr.note("the page's backend minted a token (POST /v1/tokens)")
	io.WriteString(w, out.Token)
}

// tab is one open page.
type tab struct {
	e      *e2e
	ctx    context.Context
	cancel context.CancelFunc
}

func (e *e2e) open(user string) *tab {
	e.t.Helper()
	ctx, cancel := chromedp.NewContext(e.browser)
	err := chromedp.Listen(ctx, func(ev any) {
		if c, ok := ev.(*runtime.EventConsoleAPICalled); ok && len(c.Args) > 0 {
			e.tr.note("page console: " + strings.Trim(string(c.Args[0].Value), `"`))
		}
	})
	if err != nil {
		cancel()
		e.t.Fatalf("open tab: %v", err)
	}
	q := url.Values{"endpoint": {e.endpoint}, "stage": {stageARN}, "user": {user}}
	if e.auth == "token" {
		q.Set("tokenUrl", "/token?user="+url.QueryEscape(user))
	}
	page := e.pageURL + "?" + q.Encode()
	e.tr.note("page opened: " + page)
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		cancel()
		e.t.Fatalf("open page: %v", err)
	}
	return &tab{e: e, ctx: ctx, cancel: cancel}
}

func evaluate[T any](p *tab, expr string) T {
	p.e.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.e.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (p *tab) sessionID() string { return evaluate[string](p, "vpWatch.sessionId || ''") }
func (p *tab) errors() int       { return evaluate[int](p, "vp.errors") }
func (p *tab) state() string     { return evaluate[string](p, "vp.state") }

// close closes the tab as a user closing it would (Target.closeTarget): the
// page gets pagehide with persisted false.
func (p *tab) close() {
	p.e.tr.note("page closed")
	p.cancel()
}

func (e *e2e) waitFor(what string, cond func() bool) {
	e.t.Helper()
	testutil.Eventually(e.t, 30*time.Second, func() (bool, string) { return cond(), what })
}

// waitClosed waits until the projector has written the session's end and
// returns its end_reason.
func (e *e2e) waitClosed(sid string) string {
	e.t.Helper()
	var reason string
	var left time.Time
	testutil.Eventually(e.t, 30*time.Second, func() (bool, string) {
		err := e.query(`SELECT end_reason, left_at FROM viewer_sessions WHERE session_id = $1 AND left_at IS NOT NULL`, []any{sid}, &reason, &left)
		return err == nil, fmt.Sprintf("row of %s closed: %v", sid, err)
	})
	e.tr.note(fmt.Sprintf("PostgreSQL: viewer_sessions row %s closed, end_reason=%s, left_at=%s", sid, reason, left.UTC().Format("15:04:05.000")))
	return reason
}

func (e *e2e) rows(user string) int {
	e.t.Helper()
	var n int
	if err := e.query(`SELECT count(*) FROM viewer_sessions WHERE user_id = $1`, []any{user}, &n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *e2e) query(sql string, args []any, dst ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql, args...).Scan(dst...)
}

// transcript records every request that reaches ingest, and notes.
type transcript struct {
	start time.Time
	mu    sync.Mutex
	reqs  []request
	lines []string
}

type request struct {
	at                                             time.Time
	method, path, contentType, origin, allowOrigin string
	status                                         int
}

// handler forwards to ingest and records each request with its answer.
func (tr *transcript) handler(target string) http.Handler {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	// A request held in the black hole reaches here after the restore, from
	// a browser that has given up on it: its context is already canceled.
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.Header().Set("X-Recorder-Error", err.Error())
		w.WriteHeader(http.StatusBadGateway)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: 200}
		rp.ServeHTTP(sw, r)
		q := request{at: time.Now(), method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
			origin: r.Header.Get("Origin"), allowOrigin: sw.Header().Get("Access-Control-Allow-Origin"), status: sw.status}
		line := fmt.Sprintf("%s %s [%s] Origin %s → %d (Access-Control-Allow-Origin %q)",
			q.method, q.path, q.contentType, q.origin, q.status, q.allowOrigin)
		if e := sw.Header().Get("X-Recorder-Error"); e != "" {
			line = fmt.Sprintf("%s %s held by the black hole, delivered after the restore; the browser had given up on it (%s)", q.method, q.path, e)
		}
		tr.mu.Lock()
		tr.reqs = append(tr.reqs, q)
		tr.lines = append(tr.lines, tr.stamp(q.at)+line)
		tr.mu.Unlock()
	})
}

func (tr *transcript) stamp(at time.Time) string {
	return fmt.Sprintf("%s +%6.3fs  ", at.UTC().Format("15:04:05.000"), at.Sub(tr.start).Seconds())
}

func (tr *transcript) note(s string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.lines = append(tr.lines, tr.stamp(time.Now())+s)
}

func (tr *transcript) find(method, path string) []request {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []request
	for _, q := range tr.reqs {
		if q.method == method && q.path == path {
			out = append(out, q)
		}
	}
	return out
}

func (tr *transcript) count(method, path string, status int) int {
	return tr.countSince(method, path, status, time.Time{})
}

func (tr *transcript) countSince(method, path string, status int, since time.Time) int {
	n := 0
	for _, q := range tr.find(method, path) {
		if q.status == status && q.at.After(since) {
			n++
		}
	}
	return n
}

func (tr *transcript) print(t *testing.T) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("transcript:\n%s", strings.Join(tr.lines, "\n"))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// httptest serves h on a free loopback port and returns its host:port.
func httptest(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// signingKey writes a fresh Ed25519 key (PKCS #8 PEM) for
// VIEWER_TOKEN_SIGNING_KEY and returns its path.
func signingKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "viewer.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startProc starts binary name with env and waits until its /readyz answers
// 200; it returns the address of its HTTP (ingest) or ops server. It is
// killed when the test ends; its output is shown if the test fails.
func startProc(t *testing.T, name string, env map[string]string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	key := "METRICS_ADDR"
	if name == "ingest" {
		key = "HTTP_ADDR"
	}
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = append(os.Environ(), key+"="+addr, "LOG_FORMAT=json", "LOG_LEVEL=warn")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, name + " readyz " + resp.Status
	})
	return addr
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
