// Command bench measures ViewPulse on this machine, each figure beside a
// ceiling measured in the same run by the same tool (numbers drift on shared
// machines; ratios drift less), and writes bench/results/latest.json and a
// dated copy. Run it with `go tool task bench`; it needs the local Redis and
// PostgreSQL, talks to 127.0.0.1 only, and leaves nothing behind (a random
// Redis prefix, a fresh PostgreSQL schema, both removed at the end).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "ceiling-server" {
		// The bare handler, as a process of its own like ingest.
		if err := serveCeiling(ctx, os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench ceiling-server:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the flags.
type options struct {
	redisURL, databaseURL string
	out                   string
	step, warmup          time.Duration
	maxP99                time.Duration
	viewers               int
	events                int
	steady, steadyRef     time.Duration
	skip                  map[string]bool
	limits                bool
	sseClients            int
	viewersHold           time.Duration
	searches              int
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	phases := []struct {
		name string
		fn   func(context.Context, *env, *Results) error
	}{
		{"http", httpPhase},
		{"memory", memoryPhase},
		{"projector", projectorPhase},
		{"lag", lagPhase},
		{"steady", steadyPhase},
		{"durability", durabilityPhase},
		{"cluster", clusterPhase},
		{"cpu", cpuCostPhase},
		{"viewers", viewersPhase},
	}
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = p.name
	}
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&o.redisURL, "redis", envOr(getenv, "REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL (env REDIS_URL)")
	fs.StringVar(&o.databaseURL, "database", envOr(getenv, "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL (env DATABASE_URL); a fresh schema is made in it")
	fs.StringVar(&o.out, "out", "bench/results", "directory for latest.json and the dated copy")
	fs.DurationVar(&o.step, "step", 4*time.Second, "length of one rate step of a search, after its warm-up")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up of each rate step, left out of its figures")
	fs.DurationVar(&o.viewersHold, "viewers-hold", 2*time.Minute, "viewers phase: how long each audience level is held")
	fs.DurationVar(&o.maxP99, "p99", 50*time.Millisecond, "latency bound of a sustained rate")
	fs.IntVar(&o.viewers, "viewers", 100_000, "present viewers for the memory-per-viewer figure")
	fs.IntVar(&o.events, "events", 1_000_000, "events the projector drains (and COPY and the seed pattern write)")
	fs.DurationVar(&o.steady, "steady", 3*time.Minute, "steady viewer load with trimming on, for the bounded-memory figure")
	fs.DurationVar(&o.steadyRef, "steady-ref", 2*time.Minute, "memory at this point of the steady load is the reference")
	fs.BoolVar(&o.limits, "limits", false, "keep ingest's join rate limits on (at a rate the load never reaches) to measure their cost")
	fs.IntVar(&o.searches, "searches", 3, "http phase: heartbeat rate searches of each of the bare handler and ingest, alternating; the figure is the median ratio")
	fs.IntVar(&o.sseClients, "sse-clients", 0, "http phase: also search ingest's heartbeat rate with this many GET /v1/live streams held open (1000: the operators' figure)")
	skip := fs.String("skip", "", "comma-separated phases to leave out: "+strings.Join(names, ", "))
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.skip = map[string]bool{}
	for _, s := range splitComma(*skip) {
		if !slices.Contains(names, s) {
			return fmt.Errorf("-skip %s: no such phase (%s)", s, strings.Join(names, ", "))
		}
		o.skip[s] = true
	}
	if o.steadyRef >= o.steady || o.step <= 0 || o.warmup < 0 || o.viewers <= 0 || o.events <= 0 || o.searches < 1 {
		return fmt.Errorf("invalid flags: need 0 < steady-ref < steady, step > 0, viewers > 0, events > 0, searches > 0")
	}

	began := time.Now()
	bench, err := newEnv(ctx, o, stdout)
	if err != nil {
		return err
	}
	defer bench.close()

	res := &Results{Date: began.UTC().Format(time.RFC3339), Host: hostInfo()}
	for _, p := range phases {
		if o.skip[p.name] {
			res.Notes = append(res.Notes, p.name+": skipped by -skip")
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(stdout, "\n=== %s\n", p.name)
		if err := p.fn(ctx, bench, res); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		fmt.Fprintf(stdout, "=== %s done in %s\n", p.name, time.Since(t0).Round(time.Second))
	}
	res.DurationS = time.Since(began).Seconds()
	res.compute()
	fmt.Fprintln(stdout)
	res.Table(stdout)
	return res.write(o.out, began)
}

func (r *Results) write(dir string, at time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	for _, name := range []string{"latest.json", at.Format("2006-01-02") + ".json"} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}
