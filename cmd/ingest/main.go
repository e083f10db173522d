// Command ingest is ViewPulse's HTTP API: players post join, heartbeat and
// leave; each is appended to the Redis stream together with the live-state
// change, in one atomic step, before the answer.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/config"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/ratelimit"
	"github.com/viewpulse/viewpulse/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

// shutdownGrace bounds the drain of in-flight requests at SIGTERM.
const shutdownGrace = 10 * time.Second

// maxHeaderBytes bounds a request's line and headers (net/http answers 431
// above it). A player's request carries a few hundred bytes; net/http's
// default of 1 MiB would let each slow connection hold a megabyte for
// ReadHeaderTimeout. 64 KiB leaves room for a customer domain's cookies.
const maxHeaderBytes = 64 << 10

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	env := config.NewEnv(getenv)
	common := config.ReadCommon(env, stdout)
	addr := env.String("HTTP_ADDR", ":8080")
	maxLen := env.Int("STREAM_MAX_LEN", 2_000_000, 0, 1<<40)
	recordEvery := env.DurationOrOff("HEARTBEAT_RECORD_INTERVAL", 5*time.Minute)
	snapshotEvery := config.SnapshotInterval(env)
	pprofAddr := env.String("PPROF_ADDR", "")
	proxies := parsePrefixes(env, "TRUSTED_PROXIES")
	apiKeys := splitList(env.String("API_KEYS", ""))
	tokens, corsOrigins := readTrust(env, apiKeys) // trust.go
	readAPI := env.Bool("READ_API", true)
	seatTTL := env.Duration("SEAT_TTL", api.DefaultSeatTTL)
	if seatTTL < time.Second || seatTTL > time.Hour {
		env.Fail("SEAT_TTL", "a duration from 1s to 1h", seatTTL.String())
	}
	limits := readLimits(env) // limits.go
	writeBehind := env.Bool("PRESENCE_WRITE_BEHIND", true)
	flushEvery := env.Duration("PRESENCE_FLUSH_INTERVAL", events.DefaultFlushEvery)
	if flushEvery < 10*time.Millisecond || flushEvery > time.Second {
		env.Fail("PRESENCE_FLUSH_INTERVAL", "a duration from 10ms to 1s", flushEvery.String())
	}
	// Under load, script calls wait up to this long for company and share
	// one pipeline (events.Stream.SetFlushDelay). Measured at 4,000
	// joins/s: 0.1 Redis reads per join instead of 1, ingest + Redis CPU
	// per join -26 %, p50 +1.5-2 ms; nothing waits after a quiet spell.
	flushDelay := env.DurationOrOff("REDIS_FLUSH_DELAY", 2*time.Millisecond)
	if flushDelay > 10*time.Millisecond {
		env.Fail("REDIS_FLUSH_DELAY", "off or a duration up to 10ms", flushDelay.String())
	}
	var dbURL, readURL string
	if readAPI {
		dbURL = config.DatabaseURL(env)
		readURL = env.String("DATABASE_READ_URL", dbURL)
	}
	if err := env.Err(); err != nil {
		return err
	}
	log := common.Logger(stdout)
	log.Info("ingest starting", env.LogAttrs()...)
	logTrust(log, tokens)
	if getenv("GOGC") == "" {
		// The live heap is small (buffers, in-flight requests); collecting at
		// 4x instead of 2x of it halves GC work on the hot path. Measured:
		// p99 of 10,650 heartbeats/s fell from 50-100 ms to 12-80 ms here.
		debug.SetGCPercent(400)
	}

	rdb, err := common.Redis()
	if err != nil {
		return err
	}
	defer rdb.Close()
	config.CheckRedis(ctx, rdb, log)
	stream, err := common.Stream(ctx, rdb, log)
	if err != nil {
		return err
	}
	stream.MaxLen = maxLen
	stream.RecordEvery = recordEvery
	stream.SetFlushDelay(flushDelay)
	// A per-minute peak is read at the next snapshot boundary (within a grace
	// of at most a minute) and deleted then; it expires this long after its
	// hour in case no snapshotter takes it.
	stream.PeakKeep = snapshotEvery + 2*time.Minute
	limiter := ratelimit.New(rdb, common.RedisPrefix)
	limiter.Run = stream.RunScript // limit checks share the writes' pipelines

	reg := ops.NewRegistry()
	// Closed when the server starts draining: Shutdown waits for running
	// requests without cancelling them, so the live streams end on this.
	draining := make(chan struct{})
	cfg := api.Config{
		Live:            api.LiveConfig{Draining: draining},
		Stream:          stream,
		Log:             log,
		Registry:        reg,
		Ready:           map[string]ops.Check{"redis": func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		TrustedProxies:  proxies,
		RedisTimeout:    common.RedisTimeout,
		APIKeys:         apiKeys,
		Limits:          limits.limits(limiter),
		IPStorage:       limits.ipStorage,
		NoHeartbeatSkip: !limits.heartbeatSkip,
		Tokens:          tokens,
		CORSOrigins:     corsOrigins,
		SeatTTL:         seatTTL,
	}
	// Presence write-behind (events.WriteBehind): its loop stops after the
	// HTTP server has drained, with a last flush of what was answered.
	flushCtx, stopFlush := context.WithCancel(context.Background())
	flushed := make(chan struct{})
	if writeBehind {
		cfg.WriteBehind = stream.NewWriteBehind(flushEvery)
		go func() { defer close(flushed); cfg.WriteBehind.Run(flushCtx) }()
	} else {
		close(flushed)
	}
	defer func() { stopFlush(); <-flushed }()
	// Which stages are placed by their group's master: read every second,
	// so that a group change made through another ingest is followed.
	placeCtx, stopPlace := context.WithCancel(ctx)
	defer stopPlace()
	go stream.WatchPlacement(placeCtx, time.Second)
	if readAPI {
		// The pools connect on first use, so the player routes serve while
		// PostgreSQL is down; migrations and the capacity sync retry in the
		// background and /readyz reports them.
		writeDB, err := store.Connect(dbURL, store.Options{})
		if err != nil {
			return fmt.Errorf("DATABASE_URL: %w", err)
		}
		defer writeDB.Close()
		readDB := writeDB
		if readURL != dbURL {
			if readDB, err = store.Connect(readURL, store.Options{}); err != nil {
				return fmt.Errorf("DATABASE_READ_URL: %w", err)
			}
			defer readDB.Close()
		}
		cfg.ReadDB, cfg.WriteDB = readDB, writeDB
		prep := &preparation{}
		cfg.Ready["postgres"] = func(ctx context.Context) error {
			if err := prep.Err(); err != nil {
				return err
			}
			if err := writeDB.Ping(ctx); err != nil {
				return err
			}
			return readDB.Ping(ctx)
		}
		prepCtx, stopPrep := context.WithCancel(ctx)
		prepared := make(chan struct{})
		defer func() { stopPrep(); <-prepared }()
		go func() {
			defer close(prepared)
			prep.Run(prepCtx, log, func(ctx context.Context) error {
				if err := writeDB.Migrate(ctx); err != nil {
					return err
				}
				return api.SyncStages(ctx, writeDB, stream)
			})
		}()
	}
	handler := api.NewServer(cfg)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          ops.ErrorLog(log), // net/http's lines name peers: addresses redacted
		MaxHeaderBytes:    maxHeaderBytes,
	}
	srv.RegisterOnShutdown(func() { close(draining) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if pprofAddr != "" {
		// Profiles on their own listener, never on the public port.
		go func() {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace) // runtime/trace: GC, scheduling, syscalls
			psrv := &http.Server{Addr: pprofAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: ops.ErrorLog(log)}
			log.Warn("pprof served", "addr", pprofAddr, "err", psrv.ListenAndServe())
		}()
	}
	log.Info("ingest listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("ingest draining", "grace", shutdownGrace.String())
	shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	stopFlush()
	<-flushed
	log.Info("ingest stopped")
	return nil
}

// preparation retries the database's start-up steps (migrations, capacity
// sync) until they succeed, and reports the last failure meanwhile.
type preparation struct {
	mu   sync.Mutex
	err  error
	done bool
}

// Err is nil once the steps succeeded, else why they have not yet.
func (p *preparation) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.done:
		return nil
	case p.err != nil:
		return fmt.Errorf("not prepared: %w", p.err)
	}
	return errors.New("not prepared yet")
}

// Run calls step until it succeeds or ctx ends, waiting 1s, 2s, 4s … up to
// 30s between tries.
func (p *preparation) Run(ctx context.Context, log *slog.Logger, step func(context.Context) error) {
	delay := time.Second
	for {
		err := step(ctx)
		p.mu.Lock()
		p.err, p.done = err, err == nil
		p.mu.Unlock()
		if err == nil {
			log.Info("database ready: migrations applied, capacities synced")
			return
		}
		log.Warn("database not ready; retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parsePrefixes reads a comma-separated list of CIDRs (a bare address counts
// as a /32 or /128).
func parsePrefixes(env *config.Env, name string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range splitList(env.String(name, "")) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				env.Fail(name, "comma-separated CIDRs such as 10.0.0.0/8", f)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}
