// Package testutil finds the Redis and PostgreSQL that integration tests talk
// to and gives each test its own corner of them: a random key prefix in Redis,
// a fresh schema in PostgreSQL.
//
// Lookup order: TEST_REDIS_URL / TEST_DATABASE_URL, then the local defaults,
// then containers through testcontainers when Docker answers. When none
// answers the test is skipped with a clear message, unless
// VIEWPULSE_REQUIRE_SERVICES is set (CI sets it), in which case it fails.
package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// RequireEnv, when set to anything, turns every skip for a missing service
// into a failure.
const RequireEnv = "VIEWPULSE_REQUIRE_SERVICES"

const (
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// unavailable skips the test, or fails it under RequireEnv.
func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) != "" {
		tb.Fatalf("%s (%s is set, so this is a failure, not a skip)", msg, RequireEnv)
	}
	tb.Skip(msg + "; set TEST_REDIS_URL / TEST_DATABASE_URL or start Docker")
}

// RandomID returns n random bytes in hex.
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	redisOnce sync.Once
	redisURL  string
	redisErr  error
)

// RedisURL returns the URL of a Redis that answers, or skips/fails tb.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	redisOnce.Do(func() {
		candidates := []string{os.Getenv("TEST_REDIS_URL")}
		if candidates[0] == "" {
			candidates = []string{defaultRedisURL}
		}
		for _, u := range candidates {
			if redisErr = pingRedis(u); redisErr == nil {
				redisURL = u
				return
			}
		}
		if u, err := containerRedis(); err == nil {
			redisURL, redisErr = u, nil
		} else {
			redisErr = fmt.Errorf("%v; testcontainers: %v", redisErr, err)
		}
	})
	if redisURL == "" {
		unavailable(tb, "no Redis: %v", redisErr)
	}
	return redisURL
}

func pingRedis(u string) error {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// Redis returns a client to the test Redis and a random key prefix; every key
// under the prefix is deleted when the test ends.
func Redis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	opt, err := redis.ParseURL(RedisURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(opt)
	prefix := "vptest-" + RandomID(6)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// SCAN is for test clean-up only; the product never walks the keyspace.
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
		c.Close()
	})
	return c, prefix
}

var (
	pgOnce sync.Once
	pgURL  string
	pgErr  error
)

// DatabaseURL returns the URL of a PostgreSQL that answers, or skips/fails tb.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	pgOnce.Do(func() {
		u := os.Getenv("TEST_DATABASE_URL")
		if u == "" {
			u = defaultDatabaseURL
		}
		if pgErr = pingPostgres(u); pgErr == nil {
			pgURL = u
			return
		}
		if cu, err := containerPostgres(); err == nil {
			pgURL, pgErr = cu, nil
		} else {
			pgErr = fmt.Errorf("%v; testcontainers: %v", pgErr, err)
		}
	})
	if pgURL == "" {
		unavailable(tb, "no PostgreSQL: %v", pgErr)
	}
	return pgURL
}

func pingPostgres(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// Schema creates a fresh, empty schema and returns a database URL whose
// connections use it (search_path), so code under test runs its migrations
// into it as into an empty database. The schema is dropped when the test ends.
func Schema(tb testing.TB) string {
	tb.Helper()
	base := DatabaseURL(tb)
	name := "t_" + RandomID(6)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect %s: %v", base, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Logf("drop schema %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			tb.Logf("drop schema %s: %v", name, err)
		}
	})
	return WithSearchPath(tb, base, name)
}

// WithSearchPath returns dsn with its connections' search_path set to schema.
func WithSearchPath(tb testing.TB, dsn, schema string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("parse %s: %v", dsn, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Eventually calls cond until it reports true or timeout passes, then fails
// tb with cond's last message. It is the only way tests wait.
func Eventually(tb testing.TB, timeout time.Duration, cond func() (bool, string)) {
	tb.Helper()
	if err := waitFor(timeout, cond); err != nil {
		tb.Fatal(err)
	}
}

// waitFor is Eventually for helpers without a testing.TB: it returns an
// error naming cond's last message instead of failing a test.
func waitFor(timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		ok, msg := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %s", timeout, msg)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RedisServer is a redis-server process of a test's own, for drills that
// kill or slow Redis.
type RedisServer struct {
	URL  string
	Dir  string
	Port int
	args []string
	cmd  *exec.Cmd
}

// StartRedisServer starts redis-server on a free loopback port with its data
// in a temporary directory, plus extra arguments (for example "--appendonly",
// "yes", "--appendfsync", "always"). It is killed when the test ends.
func StartRedisServer(tb testing.TB, extra ...string) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(tb, "redis-server is not installed: %v", err)
	}
	s := &RedisServer{Dir: tb.TempDir(), Port: FreePort(tb)}
	s.args = append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port),
		"--dir", s.Dir, "--save", "", "--logfile", filepath.Join(s.Dir, "redis.log")}, extra...)
	s.URL = "redis://127.0.0.1:" + strconv.Itoa(s.Port) + "/0"
	s.Start(tb)
	tb.Cleanup(func() { s.Kill(tb) })
	return s
}

// Start (re)starts the server with its original arguments and waits until it
// answers.
func (s *RedisServer) Start(tb testing.TB) {
	tb.Helper()
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
}

func (s *RedisServer) start() error {
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	if err := waitFor(10*time.Second, func() (bool, string) {
		err := pingRedis(s.URL)
		return err == nil, fmt.Sprint(err)
	}); err != nil {
		s.kill()
		return fmt.Errorf("redis-server on port %d: %w", s.Port, err)
	}
	return nil
}

// Kill sends SIGKILL to the server and waits for it to exit.
func (s *RedisServer) Kill(tb testing.TB) {
	tb.Helper()
	s.kill()
}

func (s *RedisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
	s.cmd = nil
}

// Log returns what the server wrote to its log file.
func (s *RedisServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return strings.TrimSpace(string(b))
}

// RunWithBinaries is a TestMain body for tests that run ViewPulse's real
// processes: it builds pkgs (such as "../cmd/ingest") into a temporary
// directory, stores it in *dir, runs the tests, removes the directory and
// exits with the tests' status.
func RunWithBinaries(m *testing.M, dir *string, pkgs ...string) {
	d, err := os.MkdirTemp("", "viewpulse-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", append([]string{"build", "-o", d + string(filepath.Separator)}, pkgs...)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.RemoveAll(d)
		os.Exit(1)
	}
	*dir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}
