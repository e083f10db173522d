// Command snapshotter sweeps silent viewers out of the live state, writes one
// count row per active stage at every snapshot boundary and applies
// retention; with WEBHOOK_URLS it also sends stage.live / stage.empty
// webhooks and delivers the webhook outbox. Any number may run against one
// deployment. It is configured by
// environment variables only (see DESIGN.md, Configuration).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/viewpulse/viewpulse/internal/config"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/snapshotter"
	"github.com/viewpulse/viewpulse/store"
	"github.com/viewpulse/viewpulse/webhooks"
)

// shutdownTimeout bounds how long the process drains after a signal.
const shutdownTimeout = 15 * time.Second

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "snapshotter:", err)
		os.Exit(1)
	}
}

// settings is the snapshotter's effective configuration.
type settings struct {
	common      config.Common
	databaseURL string
	metricsAddr string
	snap        snapshotter.Config
	hooks       webhooks.Config
}

// readSettings reads every variable and reports every invalid one by name.
func readSettings(getenv func(string) string, stdout io.Writer) (settings, *config.Env, error) {
	env := config.NewEnv(getenv)
	s := settings{common: config.ReadCommon(env, stdout)}
	s.databaseURL = config.DatabaseURL(env)
	s.metricsAddr = env.String("METRICS_ADDR", ":9092")
	s.snap = snapshotter.Config{
		SweepInterval:     env.Duration("SWEEP_INTERVAL", 5*time.Second),
		SnapshotInterval:  config.SnapshotInterval(env),
		SnapshotRetention: env.Duration("SNAPSHOT_RETENTION", 2160*time.Hour),
		SessionRetention:  sessionRetention(env),
	}
	s.hooks = readWebhooks(env)
	return s, env, env.Err()
}

// readWebhooks reads WEBHOOK_URLS, WEBHOOK_SECRET (required with URLs),
// GROUP_SCALE_UP_AT and GROUP_ALERT_EVERY.
func readWebhooks(env *config.Env) webhooks.Config {
	raw := env.String("WEBHOOK_URLS", "")
	urls, err := webhooks.ParseURLs(raw)
	if err != nil {
		env.Fail("WEBHOOK_URLS", "comma-separated absolute http:// or https:// URLs", raw)
	}
	c := webhooks.Config{URLs: urls, Secret: env.String("WEBHOOK_SECRET", "")}
	if len(urls) > 0 && len(c.Secret) < webhooks.MinSecretLen {
		env.Fail("WEBHOOK_SECRET", fmt.Sprintf("a secret of at least %d bytes when WEBHOOK_URLS is set", webhooks.MinSecretLen), c.Secret)
	}
	rawAt := env.String("GROUP_SCALE_UP_AT", "0.8")
	at, err := strconv.ParseFloat(rawAt, 64)
	if err != nil || !(at > 0 && at <= 1) {
		env.Fail("GROUP_SCALE_UP_AT", "a share of capacity above 0 and at most 1, such as 0.8", rawAt)
		at = 0.8
	}
	c.ScaleUpAt = at
	c.AlertEvery = env.Duration("GROUP_ALERT_EVERY", 5*time.Minute)
	return c
}

// sessionRetention reads SESSION_RETENTION; "keep" (the default) is 0.
func sessionRetention(env *config.Env) time.Duration {
	raw := env.String("SESSION_RETENTION", "keep")
	if raw == "keep" {
		return 0
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		env.Fail("SESSION_RETENTION", "a positive Go duration such as 8760h, or keep", raw)
		return 0
	}
	return d
}

// run starts the snapshotter and its ops server and returns when ctx ends or
// SIGINT/SIGTERM arrives (nil after a clean shutdown), or when either fails.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 1 {
		return fmt.Errorf("unexpected arguments %q: the snapshotter is configured by environment variables", args[1:])
	}
	cfg, env, err := readSettings(getenv, stdout)
	if err != nil {
		return err
	}
	log := cfg.common.Logger(stdout)
	log.Info("snapshotter starting", env.LogAttrs()...)

	rdb, err := cfg.common.Redis() // REDIS_URL validated by config.ReadCommon
	if err != nil {
		return err
	}
	defer rdb.Close()
	config.CheckRedis(ctx, rdb, log)
	db, err := store.Open(ctx, cfg.databaseURL, store.Options{MaxConns: 4, Migrate: true})
	if err != nil {
		return err
	}
	defer db.Close()

	reg := ops.NewRegistry()
	stream, err := cfg.common.Stream(ctx, rdb, log)
	if err != nil {
		return err
	}
	// sweeps and snapshots find a grouped stage in its master's partition
	placeCtx, stopPlace := context.WithCancel(ctx)
	defer stopPlace()
	go stream.WatchPlacement(placeCtx, time.Second)
	snap := snapshotter.New(stream, db, cfg.snap, log, reg)
	checks := map[string]ops.Check{
		"redis":    func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		"postgres": db.Ping,
	}

	p := pool.New().WithErrors().WithContext(ctx).WithCancelOnError()
	p.Go(func(ctx context.Context) error {
		if err := ops.Serve(ctx, cfg.metricsAddr, ops.Handler(reg, checks, log), log); err != nil {
			return fmt.Errorf("ops server: %w", err)
		}
		return nil
	})
	p.Go(snap.Run)
	if len(cfg.hooks.URLs) > 0 {
		outbox := db.Outbox()
		emit := webhooks.NewEmitter(outbox, cfg.hooks.URLs)
		disp := webhooks.NewDispatcher(outbox, webhooks.DispatcherConfig{Secret: cfg.hooks.Secret}, log, reg)
		watcher := webhooks.NewStageWatcher(stream, emit,
			webhooks.WatcherConfig{Groups: webhooks.NewGroupDetector(stream, emit, cfg.hooks)}, log, reg)
		p.Go(disp.Run)
		p.Go(watcher.Run)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Wait() }()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("snapshotter shutting down")
	select {
	case err := <-errc:
		return err
	case <-time.After(shutdownTimeout):
		return errors.New("shutdown: work still running after " + shutdownTimeout.String())
	}
}
