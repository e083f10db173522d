package config

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

func TestPolicyKeepsLog(t *testing.T) {
	for policy, want := range map[string]bool{
		"noeviction": true, "volatile-lru": true, "volatile-ttl": true,
		"allkeys-lru": false, "allkeys-random": false, "": false,
	} {
		if got := PolicyKeepsLog(policy); got != want {
			t.Errorf("%q: %v", policy, got)
		}
	}
}

// CheckRedis warns about a Redis that would lose the log: here a server of
// the test's own with allkeys-lru and no append-only file.
func TestCheckRedisWarns(t *testing.T) {
	srv := testutil.StartRedisServer(t, "--maxmemory-policy", "allkeys-lru", "--appendonly", "no")
	e := NewEnv(vars{"REDIS_URL": srv.URL, "LOG_FORMAT": "json"}.get)
	c := ReadCommon(e, &bytes.Buffer{})
	rdb, err := c.Redis()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var out bytes.Buffer
	CheckRedis(context.Background(), rdb, slog.New(slog.NewJSONHandler(&out, nil)))
	logs := out.String()
	if !strings.Contains(logs, "maxmemory-policy may evict") || !strings.Contains(logs, "appendonly is off") {
		t.Fatalf("no warnings:\n%s", logs)
	}

	good := testutil.StartRedisServer(t, "--maxmemory-policy", "noeviction", "--appendonly", "yes")
	e = NewEnv(vars{"REDIS_URL": good.URL}.get)
	c = ReadCommon(e, &bytes.Buffer{})
	rdb2, _ := c.Redis()
	defer rdb2.Close()
	out.Reset()
	CheckRedis(context.Background(), rdb2, slog.New(slog.NewJSONHandler(&out, nil)))
	if strings.Contains(out.String(), `"level":"WARN"`) {
		t.Fatalf("warned about a safe Redis:\n%s", out.String())
	}
}

type vars map[string]string

func (v vars) get(k string) string { return v[k] }

func TestEnvNamesEveryBadVariable(t *testing.T) {
	e := NewEnv(vars{"HEARTBEAT_TIMEOUT": "-1s", "LOG_LEVEL": "loud", "REDIS_PREFIX": "a{b}"}.get)
	ReadCommon(e, &bytes.Buffer{})
	err := e.Err()
	for _, name := range []string{"HEARTBEAT_TIMEOUT", "LOG_LEVEL", "REDIS_PREFIX"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestSecretsMasked(t *testing.T) {
	e := NewEnv(vars{"DATABASE_URL": "postgres://u:hunter2@h/db", "API_KEYS": "k1,k2"}.get)
	DatabaseURL(e)
	e.String("API_KEYS", "")
	var sb strings.Builder
	for _, a := range e.LogAttrs() {
		sb.WriteString(a.(slog.Attr).String())
	}
	if s := sb.String(); strings.Contains(s, "hunter2") || strings.Contains(s, "k1") {
		t.Fatalf("secret in log attrs: %s", s)
	}
}

func TestClusterURL(t *testing.T) {
	for raw, want := range map[string]string{
		"redis+cluster://h1:7001,h2:7002,h3:7003":               "redis://h1:7001?addr=h2%3A7002&addr=h3%3A7003",
		"rediss+cluster://u:p@h1:7001,h2:7002/?dial_timeout=2s": "rediss://u:p@h1:7001?addr=h2%3A7002&dial_timeout=2s",
		"redis+cluster://h1:7001":                               "redis://h1:7001",
	} {
		got, ok := clusterURL(raw)
		if !ok || got != want {
			t.Errorf("clusterURL(%q) = %q %v, want %q", raw, got, ok, want)
		}
	}
	if _, ok := clusterURL("redis://h1:6379/0"); ok {
		t.Error("a single-server URL taken for a cluster")
	}
}
