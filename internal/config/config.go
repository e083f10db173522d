// Package config reads the environment variables every ViewPulse process
// shares, reports every invalid one by name, and builds the logger.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
)

// Env reads variables through getenv and collects what is wrong with them, so
// that a process refuses to start with one message naming every bad variable.
type Env struct {
	getenv func(string) string
	errs   []error
	seen   []kv
}

type kv struct{ name, value string }

// NewEnv reads variables with getenv (os.Getenv in main, a map in tests).
func NewEnv(getenv func(string) string) *Env { return &Env{getenv: getenv} }

// String returns the variable or def when it is unset.
func (e *Env) String(name, def string) string {
	v := e.getenv(name)
	if v == "" {
		v = def
	}
	e.seen = append(e.seen, kv{name, v})
	return v
}

// Duration parses a Go duration ("120s", "5m"); it must be above zero.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	raw := e.String(name, def.String())
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		e.Fail(name, "a positive Go duration such as 120s or 5m", raw)
		return def
	}
	return d
}

// DurationOrOff is Duration that also takes "0" or "off" for zero (the
// feature it tunes is off).
func (e *Env) DurationOrOff(name string, def time.Duration) time.Duration {
	raw := e.String(name, def.String())
	if raw == "0" || raw == "off" {
		return 0
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		e.Fail(name, "a Go duration such as 5m, or off", raw)
		return def
	}
	return d
}

// Int parses an integer within [min, max].
func (e *Env) Int(name string, def, min, max int64) int64 {
	raw := e.String(name, strconv.FormatInt(def, 10))
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < min || n > max {
		e.Fail(name, fmt.Sprintf("an integer from %d to %d", min, max), raw)
		return def
	}
	return n
}

// Bool parses true/false/1/0.
func (e *Env) Bool(name string, def bool) bool {
	raw := e.String(name, strconv.FormatBool(def))
	b, err := strconv.ParseBool(raw)
	if err != nil {
		e.Fail(name, "true or false", raw)
		return def
	}
	return b
}

// Fail records that variable name holds raw where want was expected.
func (e *Env) Fail(name, want, raw string) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: want %s", name, mask(name, raw), want))
}

// Err returns every recorded problem, or nil.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(e.errs...))
}

// LogAttrs returns the effective configuration as log attributes, secrets
// masked, for the start-up log line.
func (e *Env) LogAttrs() []any {
	out := make([]any, 0, len(e.seen))
	for _, s := range e.seen {
		out = append(out, slog.String(strings.ToLower(s.name), mask(s.name, s.value)))
	}
	return out
}

// mask hides passwords inside URLs (also in comma-separated lists of them)
// and whole values of secret-looking names.
func mask(name, value string) string {
	upper := strings.ToUpper(name)
	if value == "" {
		return value
	}
	if strings.HasSuffix(upper, "_PUBLIC_KEYS") {
		return value // paths of public keys: nothing secret
	}
	if strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "KEYS") || strings.Contains(upper, "SECRET") {
		return "***"
	}
	if strings.HasSuffix(upper, "_URL") {
		return maskURL(value)
	}
	if strings.HasSuffix(upper, "_URLS") { // comma-separated (WEBHOOK_URLS)
		parts := strings.Split(value, ",")
		for i, p := range parts {
			parts[i] = maskURL(p)
		}
		return strings.Join(parts, ",")
	}
	return value
}

// maskURL hides the password of a URL's user information.
func maskURL(value string) string {
	if u, err := url.Parse(strings.TrimSpace(value)); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
			return strings.Replace(u.String(), "xxx", "***", 1)
		}
	}
	return value
}

// Common is the configuration every process reads.
type Common struct {
	RedisURL         string
	RedisPrefix      string
	HeartbeatTimeout time.Duration
	// RedisTimeout bounds every Redis call (dial, read, write, pool wait).
	RedisTimeout time.Duration
	LogFormat    string
	LogLevel     slog.Level
	// Partitions is PARTITIONS: how many partitions (stream and live state
	// each, hash tag {p<N>}) the stages are spread over.
	Partitions int
}

// ReadCommon reads REDIS_URL, REDIS_PREFIX, HEARTBEAT_TIMEOUT, REDIS_TIMEOUT,
// PARTITIONS, LOG_FORMAT and LOG_LEVEL. stdout decides the default log format: text on a terminal.
func ReadCommon(e *Env, stdout io.Writer) Common {
	c := Common{
		RedisURL:         e.String("REDIS_URL", "redis://127.0.0.1:6379/0"),
		RedisPrefix:      e.String("REDIS_PREFIX", "vp"),
		HeartbeatTimeout: e.Duration("HEARTBEAT_TIMEOUT", 120*time.Second),
		RedisTimeout:     e.Duration("REDIS_TIMEOUT", time.Second),
		Partitions:       int(e.Int("PARTITIONS", 1, 1, events.MaxPartitions)),
	}
	if err := checkRedisURL(c.RedisURL); err != nil {
		e.Fail("REDIS_URL", "a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL", c.RedisURL)
	}
	if strings.ContainsAny(c.RedisPrefix, "{} ") {
		e.Fail("REDIS_PREFIX", "a prefix without braces or spaces", c.RedisPrefix)
	}
	defFormat := "json"
	if f, ok := stdout.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		defFormat = "text"
	}
	c.LogFormat = e.String("LOG_FORMAT", defFormat)
	if c.LogFormat != "text" && c.LogFormat != "json" {
		e.Fail("LOG_FORMAT", "text or json", c.LogFormat)
	}
	level := e.String("LOG_LEVEL", "info")
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		e.Fail("LOG_LEVEL", "debug, info, warn or error", level)
	}
	return c
}

// DatabaseURL returns DATABASE_URL, or one built from DB_HOST, DB_PORT,
// DB_NAME, DB_USER and DB_PASSWORD as the seed design did.
func DatabaseURL(e *Env) string {
	if v := e.getenv("DATABASE_URL"); v != "" {
		return e.String("DATABASE_URL", v)
	}
	u := url.URL{
		Scheme: "postgres",
		Host:   e.String("DB_HOST", "127.0.0.1") + ":" + e.String("DB_PORT", "5432"),
		Path:   "/" + e.String("DB_NAME", "ivs_live"),
	}
	user := e.String("DB_USER", "postgres")
	if pw := e.String("DB_PASSWORD", ""); pw != "" {
		u.User = url.UserPassword(user, pw)
	} else {
		u.User = url.User(user)
	}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

// Logger returns the process logger: tint's coloured text on a terminal, JSON
// otherwise.
func (c Common) Logger(w io.Writer) *slog.Logger {
	if c.LogFormat == "text" {
		return slog.New(tint.NewHandler(w, &tint.Options{Level: c.LogLevel, TimeFormat: time.TimeOnly}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: c.LogLevel}))
}

// Redis opens a client to REDIS_URL whose every call is bounded: a dial,
// read or write that takes longer than REDIS_TIMEOUT fails instead of
// hanging (blocking reads get their BLOCK time on top), and a context
// deadline cuts a call short. REDIS_URL names one server
// (redis://[user:password@]host:port/db?options, rediss:// for TLS) or a
// Redis Cluster by some of its nodes (redis+cluster://host1:port1,host2:port2
// or rediss+cluster://…, with user, password and options as in redis://).
func (c Common) Redis() (redis.UniversalClient, error) {
	timeout := c.RedisTimeout
	if u, ok := clusterURL(c.RedisURL); ok {
		opt, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeout, timeout, timeout, timeout
		opt.ContextTimeoutEnabled = true
		return redis.NewClusterClient(opt), nil
	}
	opt, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeout, timeout, timeout, timeout
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}

// Stream checks PARTITIONS against the deployment in Redis (refused when it
// was created with another number) and returns its stream. It warns when
// keys of the layout before partitions are still in Redis.
func (c Common) Stream(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) (*events.Stream, error) {
	old, err := events.CheckPartitions(ctx, rdb, c.RedisPrefix, c.Partitions)
	if err != nil {
		return nil, err
	}
	if old {
		log.Warn("Redis still holds a stream of the layout before partitions (" + c.RedisPrefix + ":{0}:events); " +
			"nothing reads it any more: see README, \"Upgrading to partitions\"")
	}
	return events.NewPartitionedStream(rdb, c.RedisPrefix, c.HeartbeatTimeout, c.Partitions), nil
}

func checkRedisURL(raw string) error {
	if u, ok := clusterURL(raw); ok {
		_, err := redis.ParseClusterURL(u)
		return err
	}
	_, err := redis.ParseURL(raw)
	return err
}

// clusterURL turns redis+cluster://[userinfo@]h1:p1,h2:p2[/][?query] into
// go-redis's cluster URL form, redis://[userinfo@]h1:p1?addr=h2:p2&query
// (rediss for rediss+cluster); ok is false for any other scheme.
func clusterURL(raw string) (string, bool) {
	scheme, rest, found := strings.Cut(raw, "://")
	if !found || (scheme != "redis+cluster" && scheme != "rediss+cluster") {
		return "", false
	}
	hostPart, query, _ := strings.Cut(rest, "?")
	userinfo := ""
	if i := strings.LastIndex(hostPart, "@"); i >= 0 {
		userinfo, hostPart = hostPart[:i+1], hostPart[i+1:]
	}
	hosts := strings.Split(strings.TrimSuffix(hostPart, "/"), ",")
	q := url.Values{}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	extra := q.Encode()
	if query != "" {
		if extra != "" {
			extra += "&"
		}
		extra += query
	}
	u := strings.TrimSuffix(scheme, "+cluster") + "://" + userinfo + hosts[0]
	if extra != "" {
		u += "?" + extra
	}
	return u, true
}

// CheckRedis logs what the Redis in use promises about the event log, and
// warns where it can lose it: a maxmemory-policy that may evict keys without
// a TTL (the stream, presence) and an append-only file that is off. It only
// logs: managed Redis services often refuse CONFIG GET.
func CheckRedis(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		// every master holds part of the log: each must keep it
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			CheckRedis(ctx, node, log.With("node", node.Options().Addr))
			return nil
		})
		return
	}
	cfg, err := rdb.ConfigGet(ctx, "*").Result()
	if err != nil {
		log.Warn("cannot read the Redis configuration; make sure maxmemory-policy is noeviction and appendonly is yes", "err", err)
		return
	}
	policy, aof, fsync := cfg["maxmemory-policy"], cfg["appendonly"], cfg["appendfsync"]
	if !PolicyKeepsLog(policy) {
		log.Warn("Redis maxmemory-policy may evict the event stream and presence keys silently; set maxmemory-policy noeviction",
			"maxmemory_policy", policy)
	}
	if aof != "yes" {
		log.Warn("Redis appendonly is off: a Redis crash or restart loses acknowledged events; set appendonly yes (README, Durability)")
	}
	log.Info("redis durability", "maxmemory_policy", policy, "appendonly", aof, "appendfsync", fsync)
}

// SnapshotInterval reads SNAPSHOT_INTERVAL (default 5m), which the
// snapshotter writes rows at and ingest keeps per-minute peaks for. Ingest
// records peaks per minute, so an interval must be whole minutes; dividing a
// day keeps boundaries on the same clock times every day.
func SnapshotInterval(env *Env) time.Duration {
	d := env.Duration("SNAPSHOT_INTERVAL", 5*time.Minute)
	if d%time.Minute != 0 || (24*time.Hour)%d != 0 {
		env.Fail("SNAPSHOT_INTERVAL", "a whole number of minutes, at least 1m, that divides 24h (1m, 5m, 15m, 1h, …)", d.String())
	}
	return d
}

// PolicyKeepsLog reports whether a maxmemory-policy never evicts keys that
// have no TTL: noeviction, or a volatile-* policy (only ViewPulse's per-minute
// peak keys carry a TTL).
func PolicyKeepsLog(policy string) bool {
	return policy == "noeviction" || strings.HasPrefix(policy, "volatile-")
}
