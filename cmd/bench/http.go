package main

import (
	"context"
	"fmt"
	"math"
	"time"

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
	bisections   = 2
	maxErrors    = 0.001 // a step with more failed requests fails
)

// search steps the rate up from searchStart by searchFactor until a step
// fails (p99 above the bound, errors, or the rate not achieved), then bisects
// between the last pass and the first failure.
func (e *env) search(ctx context.Context, what string, src func(rate float64, step int) loadgen.Source) (Search, error) {
	var s Search
	try := func(rate float64) (Step, error) {
		dur := e.o.warmup + e.o.step
		sum, err := loadgen.Run(ctx, loadgen.Config{
			Duration: dur, MaxRequests: int(rate*dur.Seconds()) + 1, Workers: 4000,
			Timeout: 5 * time.Second, Client: e.client, Warmup: e.o.warmup,
		}, src(rate, len(s.Steps)))
		if err != nil {
			return Step{}, err
		}
		st := Step{
			Rate: math.Round(rate), Achieved: math.Round(float64(sum.OK) / sum.SendDuration.Seconds()),
			P50Ms: msf(sum.P50), P99Ms: msf(sum.P99), P999Ms: msf(sum.P999), ErrorRatio: sum.ErrorRatio(),
		}
		st.Pass = sum.P99 <= e.o.maxP99 && st.ErrorRatio <= maxErrors && st.Achieved >= 0.95*rate
		fmt.Fprintf(e.out, "  %-18s rate %7.0f/s  achieved %7.0f/s  p50 %7.2fms  p99 %8.2fms  errors %.3f%% %v  %s\n",
			what, rate, st.Achieved, st.P50Ms, st.P99Ms, 100*st.ErrorRatio, sum.Errors, passFail(st.Pass))
		s.Steps = append(s.Steps, st)
		if st.Pass && st.Achieved > s.Best.Achieved {
			s.Best = st
		}
		return st, ctx.Err()
	}
	lo, hi := 0.0, 0.0
	for rate, i := searchStart, 0; i < searchSteps; rate, i = rate*searchFactor, i+1 {
		st, err := try(rate)
		if err != nil {
			return s, err
		}
		if !st.Pass {
			hi = rate
			break
		}
		lo = rate
	}
	for i := 0; i < bisections && hi > 0 && lo > 0; i++ {
		mid := (lo + hi) / 2
		st, err := try(mid)
		if err != nil {
			return s, err
		}
		if st.Pass {
			lo = mid
		} else {
			hi = mid
		}
	}
	return s, nil
}

// httpPhase finds the sustained heartbeat and join rates of the bare ceiling
// handler and of ingest, with the same requests from the same tool.
func httpPhase(ctx context.Context, e *env, r *Results) error {
	const pool = 10_000
	stages := loadgen.Stages(200)
	run := randomID()
	for _, target := range []*proc{e.ceiling, e.ingest} {
		t := loadgen.Target{Base: target.url}
		fmt.Fprintf(e.out, "  joining %d sessions at %s for the heartbeat pool…\n", pool, target.name)
		sessions, err := loadgen.Prejoin(ctx, e.client, t, pool, stages, run+"-pool", 128)
		if err != nil {
			return fmt.Errorf("%s: %w", target.name, err)
		}
		hb, err := e.search(ctx, target.name+" heartbeat", func(rate float64, _ int) loadgen.Source {
			return loadgen.Heartbeats(t, rate, sessions)
		})
		if err != nil {
			return err
		}
		if target == e.ingest && e.o.sseClients > 0 {
			// The same search with operators' dashboards connected: the
			// live hub's reads and fan-out beside the heartbeat path.
			streams := loadgen.OpenStreams(ctx, target.url, "", e.o.sseClients, 5*time.Second)
			fmt.Fprintf(e.out, "  %s\n", streams)
			withSSE, err := e.search(ctx, fmt.Sprintf("%s heartbeat, %d SSE clients", target.name, e.o.sseClients), func(rate float64, _ int) loadgen.Source {
				return loadgen.Heartbeats(t, rate, sessions)
			})
			connected := int(streams.Connected.Load())
			streams.Close()
			if err != nil {
				return err
			}
			r.HeartbeatSSE, r.SSEClients = &withSSE, connected
		}
		join, err := e.search(ctx, target.name+" join", func(rate float64, step int) loadgen.Source {
			return loadgen.Joins(t, rate, stages, fmt.Sprintf("%s-%s-%d", run, target.name, step))
		})
		if err != nil {
			return err
		}
		if target == e.ceiling {
			r.HeartbeatCeiling, r.JoinCeiling = hb, join
		} else {
			r.Heartbeat, r.Join = hb, join
		}
	}
	return nil
}

func msf(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}
