// Command loadgen simulates ViewPulse viewers against an ingest URL at an
// open-loop rate and reports the achieved rate, errors by status and latency
// percentiles. Modes:
//
//	viewers    a realistic crowd: viewers arrive at -rate per second over
//	           -stages stages, heartbeat every -heartbeat, stay about -watch,
//	           then leave or (a -vanish fraction) close the tab
//	heartbeat  -rate heartbeats per second over a pool of -pool pre-joined sessions
//	join       -rate joins per second of distinct users
//	sse        -clients streams on GET /v1/live while -rate joins per second
//	           change the counts; with -pid, the ingest process's RSS and CPU
//	           without clients (-settle) and with them (-duration), sse.go
//
// Every run is bounded by -duration and -max-requests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/viewpulse/viewpulse/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// options are the parsed flags.
type options struct {
	target      string
	mode        string
	rate        float64
	duration    time.Duration
	maxRequests int
	stages      int
	heartbeat   time.Duration
	viewers     int
	watch       time.Duration
	vanish      float64
	pool        int
	workers     int
	timeout     time.Duration
	seed        uint64
	clients     int
	mixed       bool
	settle      time.Duration
	pid         int
	key         string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := parseFlags(args, getenv, stdout)
	if err != nil {
		return err
	}
	if o.mode == "sse" {
		return runSSE(ctx, o, stdout)
	}
	cfg := loadgen.Config{
		Duration: o.duration, MaxRequests: o.maxRequests, Workers: o.workers, Timeout: o.timeout,
		Client: loadgen.NewClient(o.workers, o.timeout), Progress: stdout,
	}
	t := loadgen.Target{Base: o.target, Mixed: o.mixed}
	stages := loadgen.Stages(o.stages)
	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)

	var src loadgen.Source
	switch o.mode {
	case "join":
		src = loadgen.Joins(t, o.rate, stages, runID)
	case "heartbeat":
		fmt.Fprintf(stdout, "joining %d sessions for the heartbeat pool…\n", o.pool)
		prejoin, cancel := context.WithTimeout(ctx, o.duration+time.Minute)
		sessions, err := loadgen.Prejoin(prejoin, cfg.Client, t, o.pool, stages, runID, min(o.workers, 64))
		cancel()
		if err != nil {
			return err
		}
		src = loadgen.Heartbeats(t, o.rate, sessions)
	case "viewers":
		src, err = loadgen.NewViewers(t, loadgen.ViewersConfig{
			Viewers: o.viewers, ArrivalRate: o.rate, Heartbeat: o.heartbeat, Watch: o.watch,
			Vanish: o.vanish, Stages: stages, Run: runID, Seed: o.seed,
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "loadgen %s against %s: rate %g/s for at most %s or %d requests\n",
		o.mode, o.target, o.rate, o.duration, o.maxRequests)
	sum, err := loadgen.Run(ctx, cfg, src)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "--- summary")
	sum.Print(stdout)
	return nil
}

// parseFlags reads and checks the flags; LOADGEN_TARGET is the default of
// -target.
func parseFlags(args []string, getenv func(string) string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(out)
	def := getenv("LOADGEN_TARGET")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&o.target, "target", def, "ingest base URL (env LOADGEN_TARGET)")
	fs.BoolVar(&o.mixed, "mixed", false, "joins carry one of several real User-Agents (desktop, phone, tablet, TV, a crawler) and an X-Forwarded-For in one of several countries (ingest needs TRUSTED_PROXIES=127.0.0.1)")
	fs.StringVar(&o.mode, "mode", "viewers", "viewers, heartbeat, join or sse")
	fs.Float64Var(&o.rate, "rate", 100, "per second: viewer arrivals (viewers), heartbeats (heartbeat) or joins (join)")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "no request is sent after this (at most 24h)")
	fs.IntVar(&o.maxRequests, "max-requests", 10_000_000, "no more than this many requests are sent")
	fs.IntVar(&o.stages, "stages", 200, "number of stages viewers spread over")
	fs.DurationVar(&o.heartbeat, "heartbeat", 30*time.Second, "viewers: time between a viewer's heartbeats")
	fs.IntVar(&o.viewers, "viewers", 10_000, "viewers: how many arrive in all")
	fs.DurationVar(&o.watch, "watch", 5*time.Minute, "viewers: mean watch time")
	fs.Float64Var(&o.vanish, "vanish", 0.2, "viewers: fraction who close the tab without a leave")
	fs.IntVar(&o.pool, "pool", 10_000, "heartbeat: sessions joined first and heartbeated in turn")
	fs.IntVar(&o.workers, "workers", 2000, "most requests in flight at once")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.Uint64Var(&o.seed, "seed", 1, "viewers: random seed")
	fs.IntVar(&o.clients, "clients", 1000, "sse: streams held open on GET /v1/live")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "sse: how long the process is measured before any client connects")
	fs.IntVar(&o.pid, "pid", 0, "sse: the ingest process to measure (/proc/<pid>), 0: none")
	fs.StringVar(&o.key, "key", "", "sse: API key for GET /v1/live")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, o.validate()
}

func (o options) validate() error {
	var errs []error
	u, err := url.Parse(o.target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("-target %q: want an http(s) URL such as http://127.0.0.1:8080", o.target))
	}
	switch o.mode {
	case "viewers", "heartbeat", "join":
	case "sse":
		if o.clients < 1 || o.clients > 20_000 {
			errs = append(errs, fmt.Errorf("-clients %d: want 1 to 20000", o.clients))
		}
		if o.settle <= 0 || o.settle > time.Hour {
			errs = append(errs, fmt.Errorf("-settle %s: want above 0 and at most 1h", o.settle))
		}
	default:
		errs = append(errs, fmt.Errorf("-mode %q: want viewers, heartbeat, join or sse", o.mode))
	}
	if o.rate <= 0 || o.rate > 1_000_000 {
		errs = append(errs, fmt.Errorf("-rate %g: want above 0 and at most 1000000", o.rate))
	}
	if o.stages < 1 || o.stages > 100_000 {
		errs = append(errs, fmt.Errorf("-stages %d: want 1 to 100000", o.stages))
	}
	if o.pool < 1 || o.pool > 10_000_000 {
		errs = append(errs, fmt.Errorf("-pool %d: want 1 to 10000000", o.pool))
	}
	if err := (loadgen.Config{Duration: o.duration, MaxRequests: o.maxRequests, Workers: o.workers, Timeout: o.timeout}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.mode == "viewers" {
		if err := (loadgen.ViewersConfig{Viewers: o.viewers, ArrivalRate: o.rate, Heartbeat: o.heartbeat,
			Watch: o.watch, Vanish: o.vanish, Stages: []string{""}}).Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
