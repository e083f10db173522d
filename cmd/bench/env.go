package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/internal/loadgen"
)

// env is what every phase shares: the processes, a Redis prefix, a schema.
type env struct {
	o        options
	out      io.Writer
	rdb      *redis.Client
	prefix   string
	base     string // database URL without the schema
	schema   string
	dsn      string // database URL whose connections use schema
	bin      string // built binaries
	client   *http.Client
	ingest   *proc
	ceiling  *proc
	procs    []*proc
	prefixes []string
}

// timeout is the ingest's and snapshotter's heartbeat timeout in the bench:
// short, so that the steady phase reaches its steady state within minutes.
const timeout = 30 * time.Second

func newEnv(ctx context.Context, o options, out io.Writer) (_ *env, err error) {
	e := &env{o: o, out: out, prefix: "vpbench-" + randomID(), client: loadgen.NewClient(4000, 5*time.Second)}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	opt, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if !loopback(opt.Addr) {
		return nil, fmt.Errorf("redis %s: the bench talks to 127.0.0.1 only", opt.Addr)
	}
	e.rdb = redis.NewClient(opt)
	if err := e.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	e.prefixes = append(e.prefixes, e.prefix)

	u, err := url.Parse(o.databaseURL)
	if err != nil || !loopback(u.Host) {
		return nil, fmt.Errorf("database %q: want a URL of a PostgreSQL on 127.0.0.1", o.databaseURL)
	}
	e.base, e.schema = o.databaseURL, "bench_"+randomID()
	conn, err := pgx.Connect(ctx, e.base)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA "+e.schema)
	conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	q := u.Query()
	q.Set("search_path", e.schema)
	u.RawQuery = q.Encode()
	e.dsn = u.String()

	e.bin, err = os.MkdirTemp("", "vpbench-bin-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(out, "building ingest and snapshotter…")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.bin+string(os.PathSeparator), "./cmd/ingest", "./cmd/snapshotter")
	build.Stdout, build.Stderr = out, out
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("go build: %w", err)
	}

	e.ingest, err = e.startIngest(ctx, "ingest", o.redisURL, e.prefix)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port := freePort()
	e.ceiling, err = e.start(ctx, "ceiling", self, []string{"ceiling-server", "127.0.0.1:" + port}, "http://127.0.0.1:"+port)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// startIngest starts an ingest process on redisURL under prefix, configured
// as the bench measures it, plus extra environment (PARTITIONS=12).
func (e *env) startIngest(ctx context.Context, name, redisURL, prefix string, extra ...string) (*proc, error) {
	// All load comes from 127.0.0.1: limits off, so the bench measures the
	// pipeline; -limits keeps them on at a rate nothing reaches, so that
	// their Redis step is measured too.
	joinRate := "off"
	if e.o.limits {
		joinRate = "100000000/s"
	}
	port := freePort()
	vars := append([]string{
		"HTTP_ADDR=127.0.0.1:" + port, "REDIS_URL=" + redisURL, "REDIS_PREFIX=" + prefix,
		"STREAM_MAX_LEN=50000000", "HEARTBEAT_TIMEOUT=" + timeout.String(), "LOG_LEVEL=warn", "LOG_FORMAT=json",
		"JOIN_RATE=" + joinRate, "JOIN_RATE_PER_USER=" + joinRate,
		// its heartbeat pool revisits each session every second or two, which
		// real players (every 30 s) never do: measure the Redis step
		"HEARTBEAT_SKIP=false",
	}, extra...)
	return e.start(ctx, name, filepath.Join(e.bin, "ingest"), nil, "http://127.0.0.1:"+port, vars...)
}

// stopProc stops p before the bench ends, to free its CPU for what follows.
func (e *env) stopProc(p *proc) {
	p.stop()
	e.procs = slices.DeleteFunc(e.procs, func(q *proc) bool { return q == p })
}

// close stops the processes and removes the Redis keys and the schema.
func (e *env) close() {
	for _, p := range e.procs {
		p.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.rdb != nil {
		for _, p := range e.prefixes {
			e.dropPrefix(ctx, p)
		}
		e.rdb.Close()
	}
	if e.schema != "" {
		if conn, err := pgx.Connect(ctx, e.base); err == nil {
			if _, err := conn.Exec(ctx, "DROP SCHEMA "+e.schema+" CASCADE"); err != nil {
				fmt.Fprintln(e.out, "drop schema:", err)
			}
			conn.Close(ctx)
		}
	}
	if e.bin != "" {
		os.RemoveAll(e.bin)
	}
}

// dropPrefix deletes every key under prefix. SCAN is for clean-up only.
func (e *env) dropPrefix(ctx context.Context, prefix string) {
	iter := e.rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			e.rdb.Unlink(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		e.rdb.Unlink(ctx, keys...)
	}
}

// proc is a child process serving HTTP at url.
type proc struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  *os.File
}

// start runs path with args and extra environment, and waits until url
// answers /healthz (any status).
func (e *env) start(ctx context.Context, name, path string, args []string, url string, extraEnv ...string) (*proc, error) {
	log, err := os.CreateTemp("", "vpbench-"+name+"-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, url: url, cmd: cmd, log: log}
	e.procs = append(e.procs, p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			return p, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b, _ := os.ReadFile(log.Name())
			return nil, fmt.Errorf("%s did not answer at %s: %s", name, url, strings.TrimSpace(string(b)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM to the process and kills it after 10 s.
func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
	os.Remove(p.log.Name())
}

// serveCeiling is the ceiling: a bare net/http handler answering 204 to
// everything, after reading the body as any handler must.
func serveCeiling(ctx context.Context, addr string) error {
	if !loopback(addr) {
		return errors.New("the ceiling serves on 127.0.0.1 only")
	}
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func randomID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func hostInfo() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}
