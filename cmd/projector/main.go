// Command projector moves events from the Redis stream into PostgreSQL
// (package projector); `projector replay --into URL` rebuilds the history
// from the stream into an empty database and compares it with the live one.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sourcegraph/conc/pool"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/config"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/projector"
	"github.com/viewpulse/viewpulse/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}

// settings is the projector's effective configuration.
type settings struct {
	config.Common
	DatabaseURL string
	MetricsAddr string
	Projector   projector.Config
	Lease       projector.LeaseConfig
	Drain       time.Duration
}

func readSettings(getenv func(string) string, stdout io.Writer) (settings, *config.Env) {
	e := config.NewEnv(getenv)
	s := settings{Common: config.ReadCommon(e, stdout)}
	s.DatabaseURL = config.DatabaseURL(e)
	s.MetricsAddr = e.String("METRICS_ADDR", ":9091")
	host, _ := os.Hostname()
	s.Projector = projector.Config{
		Consumer:     e.String("CONSUMER_NAME", host+"-"+strconv.Itoa(os.Getpid())),
		BatchSize:    int(e.Int("BATCH_SIZE", projector.DefaultBatchSize, 1, 200_000)),
		BatchWait:    e.Duration("BATCH_WAIT", 50*time.Millisecond),
		ClaimMinIdle: e.Duration("CLAIM_MIN_IDLE", projector.DefaultClaimMinIdle),
	}
	s.Projector.ClaimEvery = min(s.Projector.ClaimMinIdle/2, 5*time.Second)
	s.Projector.MaintainEvery = e.Duration("MAINTAIN_INTERVAL", projector.DefaultMaintainEvery)
	s.Projector.BatchTimeout = e.Duration("BATCH_TIMEOUT", projector.DefaultBatchTimeout)
	// STREAM_RETENTION: how long acknowledged entries stay for replay; "off"
	// never trims.
	switch raw := e.String("STREAM_RETENTION", "1h"); raw {
	case "off", "0":
	default:
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			e.Fail("STREAM_RETENTION", "a positive Go duration such as 24h, or off", raw)
		}
		s.Projector.Retention = d
	}
	// A dead projector's partitions are taken over within the TTL and a
	// renewal period (TTL/3), so within CLAIM_MIN_IDLE as the bound of a
	// takeover has always been.
	s.Lease.TTL = e.Duration("LEASE_TTL", min(projector.DefaultLeaseTTL, s.Projector.ClaimMinIdle/3))
	if s.Lease.TTL < 100*time.Millisecond || s.Lease.TTL*4/3 > s.Projector.ClaimMinIdle {
		e.Fail("LEASE_TTL", "at least 100ms and at most 3/4 of CLAIM_MIN_IDLE", s.Lease.TTL.String())
	}
	s.Drain = e.Duration("SHUTDOWN_TIMEOUT", 10*time.Second)
	return s, e
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	s, env := readSettings(getenv, stdout)
	var into, partition string
	var page int
	replay := len(args) > 0 && args[0] == "replay"
	backfill := len(args) > 0 && args[0] == "backfill-ua"
	if backfill {
		fs := flag.NewFlagSet("projector backfill-ua", flag.ContinueOnError)
		fs.SetOutput(stdout)
		fs.IntVar(&page, "page", 5000, "sessions classified per statement")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
	} else if replay {
		fs := flag.NewFlagSet("projector replay", flag.ContinueOnError)
		fs.SetOutput(stdout)
		fs.StringVar(&into, "into", "", "URL of the empty database (or search_path schema) to rebuild into")
		fs.IntVar(&page, "page", 5000, "stream entries read and applied at a time")
		fs.StringVar(&partition, "partition", "all", "the partition to replay (0 to PARTITIONS-1), or all")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if into == "" {
			return errors.New("replay: --into URL is required")
		}
	} else if len(args) > 0 {
		return fmt.Errorf("unknown command %q (want none, replay or backfill-ua)", args[0])
	}
	if err := env.Err(); err != nil {
		return err
	}
	log := s.Logger(stdout)
	log.Info("projector starting", env.LogAttrs()...)

	rdb, err := s.Redis()
	if err != nil {
		return err
	}
	defer rdb.Close()
	config.CheckRedis(ctx, rdb, log)
	db, err := store.Open(ctx, s.DatabaseURL, store.Options{Migrate: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := events.CheckPartitions(ctx, rdb, s.RedisPrefix, s.Partitions); err != nil {
		return err
	}
	if backfill {
		n, err := db.BackfillDevices(ctx, projector.ClassifyUserAgent, page)
		log.Info("backfill-ua done", "classified", n, "error", err)
		return err
	}
	if replay {
		parts, err := replayParts(partition, s.RedisPrefix, s.Partitions)
		if err != nil {
			return err
		}
		return runReplay(ctx, rdb, parts, s.Partitions, db, into, page, stdout, log)
	}

	reg := ops.NewRegistry()
	s.Projector.Metrics = projector.NewMetrics(reg)
	s.Projector.Log = log
	p := projector.NewPartitioned(rdb, s.RedisPrefix, s.Partitions, db, s.Projector, s.Lease)
	checks := map[string]ops.Check{
		"redis":    func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		"postgres": db.Ping,
	}
	g := pool.New().WithErrors().WithContext(ctx).WithCancelOnError()
	g.Go(func(ctx context.Context) error {
		return ops.Serve(ctx, s.MetricsAddr, ops.Handler(reg, checks, log), log)
	})
	g.Go(func(ctx context.Context) error { return p.Run(ctx, s.Drain) })
	err = g.Wait()
	log.Info("projector stopped", "error", err)
	return err
}

// replayOutput is what `projector replay` prints, one JSON object.
type replayOutput struct {
	Equal   bool                   `json:"equal"`
	Replay  projector.ReplayReport `json:"replay"`
	Compare projector.Comparison   `json:"compare"`
	// LiveBehind counts entries the live group has not yet acknowledged; the
	// comparison is exact only when it is 0.
	LiveBehind int64 `json:"live_behind"`
}

// replayParts reads --partition: "all", or one partition below n.
func replayParts(flag, prefix string, n int) ([]events.Keys, error) {
	if flag == "all" {
		parts := make([]events.Keys, n)
		for p := range parts {
			parts[p] = events.PartitionKeys(prefix, p)
		}
		return parts, nil
	}
	p, err := strconv.Atoi(flag)
	if err != nil || p < 0 || p >= n || strconv.Itoa(p) != flag {
		return nil, fmt.Errorf("replay: --partition %q: want all or 0 to %d (PARTITIONS=%d)", flag, n-1, n)
	}
	return []events.Keys{events.PartitionKeys(prefix, p)}, nil
}

func runReplay(ctx context.Context, rdb redis.UniversalClient, parts []events.Keys, partitions int, live *store.DB, into string,
	page int, stdout io.Writer, log *slog.Logger) error {
	target, err := store.Open(ctx, into, store.Options{Migrate: true})
	if err != nil {
		return fmt.Errorf("--into: %w", err)
	}
	defer target.Close()
	var out replayOutput
	for _, keys := range parts {
		if groups, err := rdb.XInfoGroups(ctx, keys.Stream()).Result(); err == nil {
			for _, g := range groups {
				if g.Name == projector.DefaultGroup {
					out.LiveBehind += g.Pending + g.Lag
				}
			}
		}
	}
	if out.Replay, err = projector.ReplayPartitions(ctx, rdb, parts, target, page); err != nil {
		return err
	}
	if len(parts) == partitions {
		out.Compare, err = projector.Compare(ctx, live, target)
	} else {
		out.Compare, err = projector.ComparePartition(ctx, live, target, parts[0].Partition(), partitions)
	}
	if err != nil {
		return err
	}
	out.Equal = out.Compare.Equal()
	log.Info("replay done", "equal", out.Equal, "entries", out.Replay.Entries, "truncated", out.Replay.Truncated,
		"live_behind", out.LiveBehind)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if !out.Equal {
		return errors.New("replay differs from the live projection")
	}
	return nil
}
