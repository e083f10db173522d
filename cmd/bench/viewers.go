package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/loadgen"
	"github.com/viewpulse/viewpulse/projector"
	"github.com/viewpulse/viewpulse/store"
)

// Viewers-per-box phase (issue 14): the whole pipeline on this box —
// ingest, snapshotter (processes), projector (in this process, beside the
// load generator), Redis, PostgreSQL — under an audience of N concurrent
// viewers, N raised ×1.5 from viewersStart until a level fails: heartbeat
// p99 above the bound, projector lag p99 above a second, or errors. Each
// level: N viewers joined (as fast as ingest takes them), then held for
// o.viewersHold, each heartbeating every 30 s, with a realistic churn on top
// (arrivals, long-tailed stays of 20-minute median, 20 % vanishing without
// a leave, 2 % reloading). It reports the largest level held, with each
// process's share of a core and Redis's memory at it.
const (
	viewersStart  = 50_000
	viewersFactor = 1.5
	viewersLevels = 8
	lagBound      = time.Second
)

// ViewersLevel is one audience level of the phase.
type ViewersLevel struct {
	Viewers      int                `json:"viewers"`
	HeartbeatRPS float64            `json:"heartbeat_rps"`
	P50Ms        float64            `json:"heartbeat_p50_ms"`
	P99Ms        float64            `json:"heartbeat_p99_ms"`
	ErrorRatio   float64            `json:"error_ratio"`
	LagP99Ms     float64            `json:"projector_lag_p99_ms"`
	CPUShare     map[string]float64 `json:"cpu_share"` // process -> cores used on average
	RedisBytes   int64              `json:"redis_used_memory"`
	Pass         bool               `json:"pass"`
}

func viewersPhase(ctx context.Context, e *env, r *Results) error {
	db, err := store.Open(ctx, e.dsn, store.Options{Migrate: true})
	if err != nil {
		return err
	}
	defer db.Close()
	for i, n := 0, float64(viewersStart); i < viewersLevels; i, n = i+1, n*viewersFactor {
		level, err := e.viewersLevel(ctx, db, int(math.Round(n/1000)*1000))
		if err != nil {
			return err
		}
		r.ViewersLevels = append(r.ViewersLevels, level)
		if !level.Pass {
			break
		}
		r.ViewersPerBox = level.Viewers
	}
	return nil
}

// viewersLevel runs one level under a prefix of its own.
func (e *env) viewersLevel(ctx context.Context, db *store.DB, n int) (ViewersLevel, error) {
	lv := ViewersLevel{Viewers: n}
	prefix := "vpbench-viewers-" + randomID()
	e.prefixes = append(e.prefixes, prefix)
	// the level's keys go when it ends, so the next level's Redis memory is
	// its own
	defer e.dropPrefix(context.WithoutCancel(ctx), prefix)
	ingest, err := e.startIngest(ctx, "ingest-viewers", e.o.redisURL, prefix, "HEARTBEAT_TIMEOUT=120s", "HEARTBEAT_SKIP=true")
	if err != nil {
		return lv, err
	}
	defer e.stopProc(ingest)
	port := freePort()
	snap, err := e.start(ctx, "snapshotter-viewers", e.bin+"/snapshotter", nil, "http://127.0.0.1:"+port,
		"METRICS_ADDR=127.0.0.1:"+port, "REDIS_URL="+e.o.redisURL, "REDIS_PREFIX="+prefix, "DATABASE_URL="+e.dsn,
		"HEARTBEAT_TIMEOUT=120s", "LOG_LEVEL=warn", "LOG_FORMAT=json")
	if err != nil {
		return lv, err
	}
	defer e.stopProc(snap)
	pctx, stopProjector := context.WithCancel(ctx)
	proj := projector.NewPartitioned(e.rdb, prefix, 1, db, projector.Config{Consumer: "viewers", Retention: 5 * time.Minute}, projector.LeaseConfig{})
	projDone := make(chan error, 1)
	go func() { projDone <- proj.Run(pctx, 10*time.Second) }()
	defer func() { stopProjector(); <-projDone }()

	stages := loadgen.Stages(200)
	t := loadgen.Target{Base: ingest.url}
	t0 := time.Now()
	sessions, err := loadgen.Prejoin(ctx, e.client, t, n, stages, prefix, 256)
	if err != nil {
		return lv, fmt.Errorf("%d viewers: %w", n, err)
	}
	fmt.Fprintf(e.out, "  %d viewers joined in %s\n", n, time.Since(t0).Round(time.Second))

	cpu := []*cpuProc{{name: "ingest", pid: ingest.cmd.Process.Pid}, {name: "snapshotter", pid: snap.cmd.Process.Pid},
		{name: "bench (projector and load generator)", pid: os.Getpid()}}
	redisCPU0, err := redisCPUSeconds(ctx, e.rdb)
	if err != nil {
		return lv, err
	}
	for _, c := range cpu {
		if err := c.start(); err != nil {
			return lv, err
		}
	}
	began := time.Now()
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	var lags []time.Duration
	var lagMu sync.Mutex
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-lagCtx.Done():
				return
			case <-tick.C:
			}
			if l, err := projectionLag(lagCtx, e.rdb, events.NewKeys(prefix)); err == nil {
				lagMu.Lock()
				lags = append(lags, l)
				lagMu.Unlock()
			}
		}
	}()
	// the churn: arrivals at n / (mean stay) per second, so the audience
	// would stay near n on its own too
	churn, err := loadgen.NewViewers(t, loadgen.ViewersConfig{
		Viewers: int(float64(n) * e.o.viewersHold.Seconds() / 2000), ArrivalRate: float64(n) / 2000,
		Heartbeat: 30 * time.Second, Watch: 20 * time.Minute, LongTail: true, Vanish: 0.2, Rejoin: 0.02,
		Stages: stages, Run: prefix + "-churn", Seed: uint64(n),
	})
	if err != nil {
		return lv, err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = loadgen.Run(ctx, loadgen.Config{Duration: e.o.viewersHold, MaxRequests: 100_000_000, Workers: 1000,
			Timeout: 5 * time.Second, Client: e.client}, churn)
	})
	rate := float64(n) / 30
	sum, err := loadgen.Run(ctx, loadgen.Config{Duration: e.o.viewersHold, MaxRequests: int(rate*e.o.viewersHold.Seconds()) + 1,
		Workers: 4000, Timeout: 5 * time.Second, Client: e.client, Warmup: 10 * time.Second}, loadgen.Heartbeats(t, rate, sessions))
	wg.Wait()
	stopLag()
	<-lagDone
	if err != nil {
		return lv, err
	}
	held := time.Since(began).Seconds()
	lv.CPUShare = map[string]float64{}
	for _, c := range cpu {
		used, err := c.used()
		if err != nil {
			return lv, err
		}
		lv.CPUShare[c.name] = round2(used / held)
	}
	redisCPU1, err := redisCPUSeconds(ctx, e.rdb)
	if err != nil {
		return lv, err
	}
	lv.CPUShare["redis"] = round2((redisCPU1 - redisCPU0) / held)
	mem, err := e.rdb.Info(ctx, "memory").Result()
	if err == nil {
		lv.RedisBytes = infoInt(mem, "used_memory")
	}
	lv.HeartbeatRPS = math.Round(float64(sum.OK) / sum.SendDuration.Seconds())
	lv.P50Ms, lv.P99Ms, lv.ErrorRatio = msf(sum.P50), msf(sum.P99), sum.ErrorRatio()
	slices.Sort(lags)
	if len(lags) > 0 {
		lv.LagP99Ms = msf(lags[(len(lags)*99)/100])
	}
	lv.Pass = sum.P99 <= e.o.maxP99 && lv.ErrorRatio <= maxErrors && time.Duration(lv.LagP99Ms*float64(time.Millisecond)) <= lagBound &&
		lv.HeartbeatRPS >= 0.95*rate
	fmt.Fprintf(e.out, "  %d viewers: %.0f heartbeats/s, p50 %.2fms p99 %.2fms, errors %.3f%%, projector lag p99 %.0fms, cores %v, Redis %d MB  %s\n",
		n, lv.HeartbeatRPS, lv.P50Ms, lv.P99Ms, 100*lv.ErrorRatio, lv.LagP99Ms, lv.CPUShare, lv.RedisBytes>>20, passFail(lv.Pass))
	return lv, nil
}

// projectionLag is how old the oldest entry of keys' stream not yet
// projected is: 0 with nothing behind, else the time from that entry's ID
// to the stream's newest.
func projectionLag(ctx context.Context, rdb redis.UniversalClient, keys events.Keys) (time.Duration, error) {
	info, err := rdb.XInfoStream(ctx, keys.Stream()).Result()
	if err != nil {
		return 0, err
	}
	groups, err := rdb.XInfoGroups(ctx, keys.Stream()).Result()
	if err != nil {
		return 0, err
	}
	for _, g := range groups {
		if g.Name != projector.DefaultGroup {
			continue
		}
		oldest := g.LastDeliveredID
		if g.Pending > 0 {
			p, err := rdb.XPending(ctx, keys.Stream(), g.Name).Result()
			if err != nil {
				return 0, err
			}
			oldest = p.Lower
		} else if g.LastDeliveredID == info.LastGeneratedID {
			return 0, nil
		}
		if oldest == "" || oldest == "0-0" { // nothing delivered yet
			oldest = info.FirstEntry.ID
		}
		return max(0, idTime(info.LastGeneratedID)-idTime(oldest)), nil
	}
	return 0, nil
}

func idTime(id string) time.Duration {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.Duration(n) * time.Millisecond
}

// cpuProc measures one process's CPU seconds from start.
type cpuProc struct {
	name   string
	pid    int
	start0 float64
}

func (c *cpuProc) read() (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return procCPU(b)
}

func (c *cpuProc) start() (err error) {
	c.start0, err = c.read()
	return err
}

func (c *cpuProc) used() (float64, error) {
	now, err := c.read()
	return now - c.start0, err
}

func redisCPUSeconds(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "cpu", "commandstats").Result()
	if err != nil {
		return 0, err
	}
	cpu, _, err := redisCPU(info)
	return cpu, err
}

// infoInt reads an integer field of an INFO answer (0 when absent).
func infoInt(info, field string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
