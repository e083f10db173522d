package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/internal/loadgen"
)

// Step is one rate of a search and what it achieved.
type Step struct {
	Rate       float64 `json:"rate"`
	Achieved   float64 `json:"achieved_rps"` // 2xx answers per second
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	P999Ms     float64 `json:"p999_ms"`
	ErrorRatio float64 `json:"error_ratio"`
	Pass       bool    `json:"pass"`
	// CPU per request over the whole step (warm-up included, as are its
	// requests), in microseconds: of the process answering (ingest or the
	// ceiling) and of the Redis servers behind it (0 for the ceiling), and
	// the time inside commands (scripts and all) as Redis clocks it: wall
	// time, so on a contended machine it may exceed the CPU time.
	ServerCPUUs float64 `json:"server_cpu_us_per_request"`
	RedisCPUUs  float64 `json:"redis_cpu_us_per_request,omitempty"`
	RedisCmdUs  float64 `json:"redis_command_us_per_request,omitempty"`
}

// Search is the highest rate a target sustained with p99 within the bound.
type Search struct {
	Best  Step   `json:"best"`
	Steps []Step `json:"steps"`
}

const (
	searchStart  = 2000.0
	searchFactor = 1.6
	searchSteps  = 10 // upward steps at most
	searchDown   = 3  // downward steps at most, when the first fails
	bisections   = 2
	maxErrors    = 0.001 // a step with more failed requests fails
)

// search finds the highest rate target sustains by findRate: a step fails
// with p99 above the bound, errors, or the rate not achieved. m measures
// each step's CPU per request.
func (e *env) search(ctx context.Context, what string, m *meter, src func(rate float64, step int) loadgen.Source) (Search, error) {
	var s Search
	try := func(rate float64) (Step, error) {
		st, sum, err := e.measured(ctx, m, rate, 5*time.Second, src(rate, len(s.Steps)))
		if err != nil {
			return Step{}, err
		}
		st.Pass = sum.P99 <= e.o.maxP99 && st.ErrorRatio <= maxErrors && st.Achieved >= 0.95*rate
		fmt.Fprintf(e.out, "  %-18s rate %7.0f/s  achieved %7.0f/s  p50 %7.2fms  p99 %8.2fms  cpu/req %4.0fus redis %3.0fus (commands %3.0fus)  errors %.3f%% %v  %s\n",
			what, rate, st.Achieved, st.P50Ms, st.P99Ms, st.ServerCPUUs, st.RedisCPUUs, st.RedisCmdUs, 100*st.ErrorRatio, sum.Errors, passFail(st.Pass))
		s.Steps = append(s.Steps, st)
		if st.Pass && st.Achieved > s.Best.Achieved {
			s.Best = st
		}
		return st, ctx.Err()
	}
	return s, findRate(func(rate float64) (bool, error) {
		st, err := try(rate)
		return st.Pass, err
	})
}

// measured offers src at rate for a warm-up and a step and returns the
// step's figures with the CPU per request that m saw over it.
func (e *env) measured(ctx context.Context, m *meter, rate float64, timeout time.Duration, src loadgen.Source) (Step, loadgen.Summary, error) {
	dur := e.o.warmup + e.o.step
	c0, err := m.sample(ctx)
	if err != nil {
		return Step{}, loadgen.Summary{}, err
	}
	sum, err := loadgen.Run(ctx, loadgen.Config{
		Duration: dur, MaxRequests: int(rate*dur.Seconds()) + 1, Workers: 4000,
		Timeout: timeout, Client: e.client, Warmup: e.o.warmup,
	}, src)
	if err != nil {
		return Step{}, sum, err
	}
	c1, err := m.sample(ctx)
	if err != nil {
		return Step{}, sum, err
	}
	return Step{
		Rate: math.Round(rate), Achieved: math.Round(float64(sum.OK) / sum.SendDuration.Seconds()),
		P50Ms: msf(sum.P50), P99Ms: msf(sum.P99), P999Ms: msf(sum.P999), ErrorRatio: sum.ErrorRatio(),
		ServerCPUUs: usPer(c1.proc-c0.proc, sum.Sent), RedisCPUUs: usPer(c1.redis-c0.redis, sum.Sent),
		RedisCmdUs: usPer(c1.redisCmds-c0.redisCmds, sum.Sent),
	}, sum, nil
}

// findRate calls try with rates from searchStart up by searchFactor until one
// fails, or, when the first fails, down by it (at most searchDown steps)
// until one passes; then it bisects between the last pass and the first
// failure. It stops at try's first error.
func findRate(try func(rate float64) (bool, error)) error {
	lo, hi := 0.0, 0.0
	probe := func(rate float64) error { // moves the bound rate passes or fails
		pass, err := try(rate)
		if pass {
			lo = rate
		} else {
			hi = rate
		}
		return err
	}
	for rate, i := searchStart, 0; hi == 0 && i < searchSteps; rate, i = rate*searchFactor, i+1 {
		if err := probe(rate); err != nil {
			return err
		}
	}
	for rate, i := hi/searchFactor, 0; lo == 0 && i < searchDown; rate, i = rate/searchFactor, i+1 {
		if err := probe(rate); err != nil {
			return err
		}
	}
	for i := 0; i < bisections && hi > 0 && lo > 0; i++ {
		if err := probe((lo + hi) / 2); err != nil {
			return err
		}
	}
	return nil
}

// httpPhase finds the sustained heartbeat and join rates of the bare ceiling
// handler and of ingest, with the same requests from the same tool.
func httpPhase(ctx context.Context, e *env, r *Results) error {
	stages := loadgen.Stages(200)
	run := randomID()
	meters := map[*proc]*meter{}
	for _, target := range []*proc{e.ceiling, e.ingest} {
		meters[target] = &meter{pid: target.cmd.Process.Pid}
		if target == e.ingest {
			meters[target].redis = []*redis.Client{e.rdb}
		}
	}
	// The heartbeat searches, e.o.searches times, alternating (bare, ingest,
	// bare, …) so that a drift of the machine falls on both alike; each
	// over a fresh pool (the previous one has timed out meanwhile).
	var sessions []string
	for rep := range e.o.searches {
		for _, target := range []*proc{e.ceiling, e.ingest} {
			hb, pool, err := e.searchHeartbeats(ctx, target, meters[target], stages, fmt.Sprintf("%s-%d", run, rep))
			if err != nil {
				return err
			}
			if target == e.ceiling {
				r.HeartbeatCeilingRuns = append(r.HeartbeatCeilingRuns, hb)
			} else {
				r.HeartbeatRuns, sessions = append(r.HeartbeatRuns, hb), pool
			}
		}
	}
	if e.o.sseClients > 0 {
		// The same search with operators' dashboards connected: the
		// live hub's reads and fan-out beside the heartbeat path.
		t := loadgen.Target{Base: e.ingest.url}
		streams := loadgen.OpenStreams(ctx, e.ingest.url, "", e.o.sseClients, 5*time.Second)
		fmt.Fprintf(e.out, "  %s\n", streams)
		withSSE, err := e.search(ctx, fmt.Sprintf("%s heartbeat, %d SSE clients", e.ingest.name, e.o.sseClients), meters[e.ingest], func(rate float64, _ int) loadgen.Source {
			return loadgen.Heartbeats(t, rate, sessions)
		})
		connected := int(streams.Connected.Load())
		streams.Close()
		if err != nil {
			return err
		}
		r.HeartbeatSSE, r.SSEClients = &withSSE, connected
	}
	for _, target := range []*proc{e.ceiling, e.ingest} {
		join, err := e.searchJoins(ctx, target, meters[target], stages, run)
		if err != nil {
			return err
		}
		if target == e.ceiling {
			r.JoinCeiling = join
		} else {
			r.Join = join
		}
	}
	return nil
}

// heartbeatPool is how many sessions a heartbeat search cycles through.
const heartbeatPool = 10_000

// searchHeartbeats joins heartbeatPool sessions at target on stages, then
// searches its heartbeat rate over them; it returns the sessions too.
func (e *env) searchHeartbeats(ctx context.Context, target *proc, m *meter, stages []string, run string) (Search, []string, error) {
	t := loadgen.Target{Base: target.url}
	fmt.Fprintf(e.out, "  joining %d sessions at %s for the heartbeat pool…\n", heartbeatPool, target.name)
	sessions, err := loadgen.Prejoin(ctx, e.client, t, heartbeatPool, stages, run+"-"+target.name+"-pool", 128)
	if err != nil {
		return Search{}, nil, fmt.Errorf("%s: %w", target.name, err)
	}
	hb, err := e.search(ctx, target.name+" heartbeat", m, func(rate float64, _ int) loadgen.Source {
		return loadgen.Heartbeats(t, rate, sessions)
	})
	return hb, sessions, err
}

// searchJoins searches target's join rate on stages, each step's users new.
func (e *env) searchJoins(ctx context.Context, target *proc, m *meter, stages []string, run string) (Search, error) {
	t := loadgen.Target{Base: target.url}
	return e.search(ctx, target.name+" join", m, func(rate float64, step int) loadgen.Source {
		return loadgen.Joins(t, rate, stages, fmt.Sprintf("%s-%s-%d", run, target.name, step))
	})
}

func msf(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// usPer is seconds over n requests in microseconds, to 0.1 µs.
func usPer(seconds float64, n int) float64 {
	if n <= 0 {
		return 0
	}
	return math.Round(seconds*1e7/float64(n)) / 10
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}
