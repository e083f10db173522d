package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/internal/loadgen"
)

// CPU-cost phase (issue 14): at one offered rate well under saturation, the
// CPU time each process spends per request — the bare 204 handler, ingest,
// Redis — for heartbeats and joins, in alternating repetitions (bare,
// ingest, bare, ingest, …) so that a drift of the machine falls on both
// alike. Unlike the rate searches' pass rule (p99 ≤ 50 ms, which flips with
// scheduling on two cores shared with the load generator), CPU per request
// hardly moves with scheduling: it is the stable cost figure.
const (
	costRate = 4000.0 // requests/s offered
	costReps = 5
)

// CPUCost is the phase's figures: µs of CPU per request of each repetition,
// and the ratios of the medians, (ingest + Redis) over the bare handler.
type CPUCost struct {
	Rate              float64   `json:"rate"`
	HeartbeatBareUs   []float64 `json:"heartbeat_bare_us"`
	HeartbeatIngestUs []float64 `json:"heartbeat_ingest_us"`
	HeartbeatRedisUs  []float64 `json:"heartbeat_redis_us"`
	JoinBareUs        []float64 `json:"join_bare_us"`
	JoinIngestUs      []float64 `json:"join_ingest_us"`
	JoinRedisUs       []float64 `json:"join_redis_us"`
	HeartbeatRatio    float64   `json:"heartbeat_ratio"` // target <= 2.0
	JoinRatio         float64   `json:"join_ratio"`      // target <= 3.5
	// The same heartbeats through an ingest with PRESENCE_WRITE_BEHIND=false
	// (a third process, its own prefix; every heartbeat runs its Redis step
	// before the answer), in the same alternation: the baseline of
	// write-behind, which the bench's ingest runs as deployed (on).
	HeartbeatStepIngestUs []float64 `json:"heartbeat_step_ingest_us"`
	HeartbeatStepRedisUs  []float64 `json:"heartbeat_step_redis_us"`
	HeartbeatStepRatio    float64   `json:"heartbeat_step_ratio"`
	// Hits of ingest's write-behind cache over its heartbeats.
	WBHitRatio float64 `json:"wb_hit_ratio"`
}

func cpuCostPhase(ctx context.Context, e *env, r *Results) error {
	stages := loadgen.Stages(200)
	run := randomID()
	c := &CPUCost{Rate: costRate}
	type target struct {
		p        *proc
		m        *meter
		sessions []string
	}
	stepPrefix := "vpbench-step-" + randomID()
	e.prefixes = append(e.prefixes, stepPrefix)
	step, err := e.startIngest(ctx, "ingest-step", e.o.redisURL, stepPrefix, "PRESENCE_WRITE_BEHIND=false")
	if err != nil {
		return err
	}
	defer e.stopProc(step)
	var targets []target
	for _, p := range []*proc{e.ceiling, e.ingest, step} {
		t := target{p: p, m: &meter{pid: p.cmd.Process.Pid}}
		if p != e.ceiling {
			t.m.redis = []*redis.Client{e.rdb}
		}
		lt := loadgen.Target{Base: p.url}
		var err error
		t.sessions, err = loadgen.Prejoin(ctx, e.client, lt, heartbeatPool, stages, run+"-"+p.name+"-cost", 128)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		targets = append(targets, t)
	}
	for rep := range costReps {
		for _, t := range targets {
			lt := loadgen.Target{Base: t.p.url}
			hb, err := e.fixedRate(ctx, t.p.name+" heartbeat", t.m, loadgen.Heartbeats(lt, costRate, t.sessions))
			if err != nil {
				return err
			}
			if t.p == step { // its joins are ingest's
				c.HeartbeatStepIngestUs = append(c.HeartbeatStepIngestUs, hb.ServerCPUUs)
				c.HeartbeatStepRedisUs = append(c.HeartbeatStepRedisUs, hb.RedisCPUUs)
				continue
			}
			join, err := e.fixedRate(ctx, t.p.name+" join", t.m,
				loadgen.Joins(lt, costRate, stages, fmt.Sprintf("%s-%s-cost-%d", run, t.p.name, rep)))
			if err != nil {
				return err
			}
			if t.p == e.ceiling {
				c.HeartbeatBareUs = append(c.HeartbeatBareUs, hb.ServerCPUUs)
				c.JoinBareUs = append(c.JoinBareUs, join.ServerCPUUs)
			} else {
				c.HeartbeatIngestUs = append(c.HeartbeatIngestUs, hb.ServerCPUUs)
				c.HeartbeatRedisUs = append(c.HeartbeatRedisUs, hb.RedisCPUUs)
				c.JoinIngestUs = append(c.JoinIngestUs, join.ServerCPUUs)
				c.JoinRedisUs = append(c.JoinRedisUs, join.RedisCPUUs)
			}
		}
	}
	c.HeartbeatRatio = costRatio(c.HeartbeatIngestUs, c.HeartbeatRedisUs, c.HeartbeatBareUs)
	c.JoinRatio = costRatio(c.JoinIngestUs, c.JoinRedisUs, c.JoinBareUs)
	c.HeartbeatStepRatio = costRatio(c.HeartbeatStepIngestUs, c.HeartbeatStepRedisUs, c.HeartbeatBareUs)
	if hits, misses, err := writeBehindCounts(ctx, e.client, e.ingest); err == nil && hits+misses > 0 {
		c.WBHitRatio = round2(hits / (hits + misses))
	}
	r.CPUCost = c
	return nil
}

// fixedRate offers src for a warm-up and a step at its own rate and returns
// the step's figures with the CPU per request of m.
func (e *env) fixedRate(ctx context.Context, what string, m *meter, src loadgen.Source) (Step, error) {
	st, sum, err := e.measured(ctx, m, costRate, e.o.maxP99*100, src)
	if err != nil {
		return Step{}, err
	}
	fmt.Fprintf(e.out, "  %-18s %5.0f/s  p50 %6.2fms  p99 %7.2fms  cpu/req %5.1fus  redis %5.1fus (commands %4.1fus)  errors %.3f%%\n",
		what, st.Achieved, st.P50Ms, st.P99Ms, st.ServerCPUUs, st.RedisCPUUs, st.RedisCmdUs, 100*st.ErrorRatio)
	if st.ErrorRatio > maxErrors {
		return st, fmt.Errorf("%s: %.2f%% of the requests failed: %v", what, 100*st.ErrorRatio, sum.Errors)
	}
	return st, nil
}

// costRatio is (median(a) + median(b)) / median(base), to 0.01.
func costRatio(a, b, base []float64) float64 {
	d := median(base)
	if d <= 0 {
		return 0
	}
	return round2((median(a) + median(b)) / d)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianRange is "median (min–max)" of xs.
func medianRange(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f (%.1f–%.1f)", median(xs), slices.Min(xs), slices.Max(xs))
}

// writeBehindCounts reads the write-behind hit and miss counters of p's
// /metrics.
func writeBehindCounts(ctx context.Context, client *http.Client, p *proc) (hits, misses float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		switch name {
		case "viewpulse_write_behind_hits_total":
			hits = f
		case "viewpulse_write_behind_misses_total":
			misses = f
		}
	}
	return hits, misses, sc.Err()
}
