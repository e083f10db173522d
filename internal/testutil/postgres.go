package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a PostgreSQL server of a test's own: a data directory in
// a temporary folder, a free loopback port, run by pg_ctl.
type PostgresServer struct {
	Dir  string
	Port int
	URL  string // of its database "postgres", as user postgres
	bin  string
	tb   testing.TB
}

// StartPostgresReplica starts a PostgreSQL primary and a streaming replica of
// it (pg_basebackup -R), each on its own free port, and stops both when the
// test ends. The shared test server is not used: its pg_hba.conf admits no
// replication connections, while initdb's default admits them on loopback.
// Servers run as the postgres user, since PostgreSQL refuses to run as root.
func StartPostgresReplica(tb testing.TB) (primary, replica *PostgresServer) {
	tb.Helper()
	bin := postgresBin(tb)
	// Not tb.TempDir(): its parent is private to this user, and the
	// servers run as postgres.
	base, err := os.MkdirTemp("", "viewpulse-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(base) })
	asPostgres(tb, "chown", "postgres", base)
	primary = &PostgresServer{Dir: filepath.Join(base, "primary"), Port: FreePort(tb), bin: bin, tb: tb}
	primary.run("initdb", "-D", primary.Dir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	primary.start("-c", "wal_level=replica", "-c", "max_wal_senders=4")
	tb.Cleanup(primary.Stop)

	replica = &PostgresServer{Dir: filepath.Join(base, "replica"), Port: FreePort(tb), bin: bin, tb: tb}
	replica.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", replica.Dir, "-R", "-X", "stream", "--no-sync")
	replica.start("-c", "hot_standby=on")
	tb.Cleanup(replica.Stop)
	return primary, replica
}

// start runs the server on its port, listening on loopback only, with the
// socket in its data directory, and waits until it accepts connections.
func (s *PostgresServer) start(opts ...string) {
	s.tb.Helper()
	o := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c max_connections=50 %s",
		s.Port, s.Dir, strings.Join(opts, " "))
	s.run("pg_ctl", "-D", s.Dir, "-o", o, "-l", filepath.Join(s.Dir, "server.log"), "-w", "-t", "60", "start")
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	Eventually(s.tb, 30*time.Second, func() (bool, string) {
		err := pingPostgres(s.URL)
		return err == nil, fmt.Sprint(err)
	})
}

// Stop shuts the server down at once (pg_ctl stop -m immediate); it does
// nothing if the server is not running.
func (s *PostgresServer) Stop() {
	if _, err := os.Stat(filepath.Join(s.Dir, "postmaster.pid")); err != nil {
		return
	}
	cmd := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(s.bin, "pg_ctl"), "-D", s.Dir, "-m", "immediate", "-w", "stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		s.tb.Logf("pg_ctl stop: %v: %s", err, out)
	}
}

// Log returns the server's log.
func (s *PostgresServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	return string(b)
}

func (s *PostgresServer) run(tool string, args ...string) {
	s.tb.Helper()
	asPostgres(s.tb, filepath.Join(s.bin, tool), args...)
}

// asPostgres runs a command as the postgres user when this process is root
// (as in CI), else as this user.
func asPostgres(tb testing.TB, name string, args ...string) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		if name == "chown" {
			cmd = exec.Command("chown", args...)
		} else {
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
		}
	} else if name == "chown" {
		return // not root: the directory is already ours
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// postgresBin finds the directory of initdb, pg_ctl and pg_basebackup:
// Debian keeps them in /usr/lib/postgresql/<major>/bin (the newest wins),
// elsewhere they are on PATH.
func postgresBin(tb testing.TB) string {
	tb.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	unavailable(tb, "initdb is not installed")
	return ""
}

func major(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// WaitReplayed waits until the replica has replayed everything the primary
// had written when it was called.
func WaitReplayed(tb testing.TB, primary, replica *PostgresServer) {
	tb.Helper()
	ctx := context.Background()
	var lsn string
	if err := queryRow(ctx, primary.URL, "select pg_current_wal_lsn()::text", &lsn); err != nil {
		tb.Fatal(err)
	}
	Eventually(tb, 30*time.Second, func() (bool, string) {
		var caught bool
		err := queryRow(ctx, replica.URL, "select pg_last_wal_replay_lsn() >= $1::pg_lsn", &caught, lsn)
		return err == nil && caught, fmt.Sprintf("replica behind %s: %v", lsn, err)
	})
}

// queryRow runs one query on a connection of its own and scans its row.
func queryRow(ctx context.Context, url, sql string, dst any, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql, args...).Scan(dst)
}
