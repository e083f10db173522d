package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/viewpulse/viewpulse/internal/loadgen"
)

// runSSE is -mode sse: while joins arrive at -rate per second over -stages
// stages (so counts change every second), it measures the ingest process -pid
// for -settle with no client, then opens -clients streams on GET /v1/live and
// measures again for -duration with all of them connected. It reports the
// process's resident memory and CPU in both phases, and what the clients got.
func runSSE(ctx context.Context, o options, stdout io.Writer) error {
	stages := loadgen.Stages(o.stages)
	client := loadgen.NewClient(64, o.timeout)
	joinCtx, stopJoins := context.WithCancel(ctx)
	defer stopJoins()
	var joins, joinErrs atomic.Int64
	go func() { // a trickle of joins keeps every stream busy
		tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-joinCtx.Done():
				return
			case <-tick.C:
			}
			go func(i int) {
				body := fmt.Sprintf(`{"stage_arn":%q,"user_id":"sse-%x-%d"}`, stages[i%len(stages)], time.Now().UnixNano()&0xffff, i)
				resp, err := client.Post(o.target+"/v1/viewers/join", "application/json", strings.NewReader(body))
				if err != nil || resp.StatusCode != 200 {
					joinErrs.Add(1)
				} else {
					joins.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}(i)
		}
	}()

	fmt.Fprintf(stdout, "loadgen sse against %s: %d clients, joins %g/s over %d stages; %s without clients, then %s with them\n",
		o.target, o.clients, o.rate, o.stages, o.settle, o.duration)
	idle, err := measure(ctx, o.pid, o.settle)
	if err != nil {
		return err
	}
	idle.print(stdout, "no client")

	start := time.Now()
	streams := loadgen.OpenStreams(ctx, o.target, o.key, o.clients, o.timeout)
	defer streams.Close()
	fmt.Fprintf(stdout, "%s, in %s\n", streams, time.Since(start).Round(time.Millisecond))
	connected := streams.Connected.Load()
	before := streams.Events.Load()
	busy, err := measure(ctx, o.pid, o.duration)
	if err != nil {
		return err
	}
	got := streams.Events.Load() - before
	busy.print(stdout, fmt.Sprintf("%d clients", connected))
	fmt.Fprintf(stdout, "events received while measured: %d (%.2f per client per second); pings %d; joins %d ok, %d failed\n",
		got, float64(got)/float64(max(connected, 1))/o.duration.Seconds(), streams.Pings.Load(), joins.Load(), joinErrs.Load())
	if idle.ok && busy.ok {
		fmt.Fprintf(stdout, "--- summary\nrss_no_clients_kib %d\nrss_clients_kib %d\nrss_per_client_kib %.1f\ncpu_no_clients_pct %.1f\ncpu_clients_pct %.1f\n",
			idle.rssKiB, busy.rssKiB, float64(busy.rssKiB-idle.rssKiB)/float64(max(connected, 1)), idle.cpuPct, busy.cpuPct)
	}
	return nil
}

// sample is what measure saw of a process over one phase.
type sample struct {
	ok     bool
	rssKiB int64   // VmRSS at the end
	cpuPct float64 // user+system CPU over the phase, % of one core
}

func (s sample) print(w io.Writer, phase string) {
	if !s.ok {
		fmt.Fprintf(w, "%s: (no -pid: process not measured)\n", phase)
		return
	}
	fmt.Fprintf(w, "%s: ingest RSS %.1f MiB, CPU %.1f%% of a core\n", phase, float64(s.rssKiB)/1024, s.cpuPct)
}

// measure waits d and returns pid's CPU over it and its RSS at the end; with
// pid 0 it only waits.
func measure(ctx context.Context, pid int, d time.Duration) (sample, error) {
	if pid == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		return sample{}, nil
	}
	t0, err := cpuTicks(pid)
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	t1, err := cpuTicks(pid)
	if err != nil {
		return sample{}, err
	}
	rss, err := rssKiB(pid)
	if err != nil {
		return sample{}, err
	}
	const clkTck = 100 // USER_HZ: /proc reports CPU time in 1/100 s on Linux
	return sample{ok: true, rssKiB: rss, cpuPct: float64(t1-t0) / clkTck / time.Since(start).Seconds() * 100}, nil
}

// cpuTicks is utime+stime of pid from /proc/<pid>/stat.
func cpuTicks(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("-pid %d: %w", pid, err)
	}
	// Fields after the command (which may hold spaces) in parentheses.
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("-pid %d: short stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, nil
}

// rssKiB is VmRSS of pid from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("-pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("-pid %d: no VmRSS", pid)
}
