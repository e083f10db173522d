package main

import (
	"context"
	"fmt"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/loadgen"
	"github.com/viewpulse/viewpulse/projector"
	"github.com/viewpulse/viewpulse/store"
)

// steadyPhase runs a steady crowd (viewers arriving at 100/s, staying about
// a minute, a heartbeat every 5 s, one in five vanishing) against ingest for
// o.steady, with a projector trimming the stream (30 s retention) and a
// snapshotter sweeping silent viewers, and compares the Redis memory of the
// deployment's keys (stream and live state) at o.steadyRef and at the end.
func steadyPhase(ctx context.Context, e *env, r *Results) error {
	port := freePort()
	if _, err := e.start(ctx, "snapshotter", e.bin+"/snapshotter", nil, "http://127.0.0.1:"+port,
		"METRICS_ADDR=127.0.0.1:"+port, "REDIS_URL="+e.o.redisURL, "REDIS_PREFIX="+e.prefix, "DATABASE_URL="+e.dsn,
		"HEARTBEAT_TIMEOUT="+timeout.String(), "SWEEP_INTERVAL=5s", "LOG_LEVEL=warn", "LOG_FORMAT=json"); err != nil {
		return err
	}
	db, err := store.Open(ctx, e.dsn, store.Options{Migrate: true})
	if err != nil {
		return err
	}
	defer db.Close()
	keys := events.NewKeys(e.prefix)
	p := projector.New(e.rdb, keys, db, projector.Config{Consumer: "steady", Retention: 30 * time.Second})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx, 10*time.Second) }()
	defer func() { stop(); <-done }()

	const arrivals = 100.0
	src, err := loadgen.NewViewers(loadgen.Target{Base: e.ingest.url}, loadgen.ViewersConfig{
		Viewers: int(arrivals * e.o.steady.Seconds()), ArrivalRate: arrivals, Heartbeat: 5 * time.Second,
		Watch: time.Minute, Vanish: 0.2, Stages: loadgen.Stages(200), Run: "steady-" + randomID(), Seed: 1,
	})
	if err != nil {
		return err
	}
	type sample struct {
		bytes, xlen int64
	}
	measure := func() (sample, error) {
		var s sample
		ks := append(keys.AllSessions(), keys.Stream(), keys.Stages(), keys.StageNames())
		for _, st := range loadgen.Stages(200) {
			ks = append(ks, keys.Present(st), keys.Members(st))
		}
		var err error
		if s.bytes, err = memoryUsage(ctx, e, ks); err != nil {
			return s, err
		}
		s.xlen, err = e.rdb.XLen(ctx, keys.Stream()).Result()
		return s, err
	}
	var ref sample
	var refErr error
	refTimer := time.AfterFunc(e.o.steadyRef, func() {
		ref, refErr = measure()
		fmt.Fprintf(e.out, "  at %s: %d bytes, stream %d entries\n", e.o.steadyRef, ref.bytes, ref.xlen)
	})
	defer refTimer.Stop()
	// The stream before the steady load (the searches' backlog) is trimmed
	// away by the projector's first maintenance; measured from here on.
	sum, err := loadgen.Run(ctx, loadgen.Config{Duration: e.o.steady, MaxRequests: 10_000_000, Workers: 4000,
		Timeout: 5 * time.Second, Client: e.client}, src)
	if err != nil {
		return err
	}
	end, err := measure()
	if err != nil {
		return err
	}
	if refErr != nil {
		return refErr
	}
	fmt.Fprintf(e.out, "  at %s: %d bytes, stream %d entries; %.0f requests/s, errors %v, p99 %.2fms\n",
		e.o.steady, end.bytes, end.xlen, sum.Rate, sum.Errors, msf(sum.P99))
	r.SteadyRefMinutes, r.SteadyMinutes = e.o.steadyRef.Minutes(), e.o.steady.Minutes()
	r.SteadyRefBytes, r.SteadyEndBytes = ref.bytes, end.bytes
	r.SteadyStreamRef, r.SteadyStreamEnd = ref.xlen, end.xlen
	r.SteadyRequestsRate = sum.Rate
	return nil
}
