// Command ingest is ViewPulse's HTTP API: players post join, heartbeat and
// leave; each is appended to the Redis stream together with the live-state
// change, in one atomic step, before the answer.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/config"
	"github.com/viewpulse/viewpulse/internal/ops"
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

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	env := config.NewEnv(getenv)
	common := config.ReadCommon(env, stdout)
	addr := env.String("HTTP_ADDR", ":8080")
	redisTimeout := env.Duration("REDIS_TIMEOUT", time.Second)
	maxLen := env.Int("STREAM_MAX_LEN", 2_000_000, 0, 1<<40)
	proxies := parsePrefixes(env, "TRUSTED_PROXIES")
	if err := env.Err(); err != nil {
		return err
	}
	log := common.Logger(stdout)
	log.Info("ingest starting", env.LogAttrs()...)

	rdb, err := common.Redis(redisTimeout)
	if err != nil {
		return err
	}
	defer rdb.Close()
	stream := events.NewStream(rdb, common.RedisPrefix, common.HeartbeatTimeout)
	stream.MaxLen = maxLen

	reg := ops.NewRegistry()
	handler := api.NewServer(api.Config{
		Stream:         stream,
		Log:            log,
		Registry:       reg,
		Ready:          map[string]ops.Check{"redis": func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		TrustedProxies: proxies,
		RedisTimeout:   redisTimeout,
	})

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
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("ingest listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("ingest draining", "grace", shutdownGrace)
	shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("ingest stopped")
	return nil
}

// parsePrefixes reads a comma-separated list of CIDRs (a bare address counts
// as a /32 or /128).
func parsePrefixes(env *config.Env, name string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Split(env.String(name, ""), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
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
