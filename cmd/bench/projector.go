package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/sourcegraph/conc/pool"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/loadgen"
	"github.com/viewpulse/viewpulse/projector"
	"github.com/viewpulse/viewpulse/store"
)

// perSession is the events of one session in the generated mix: a join, 38
// heartbeats (19 minutes at one per 30 s) and a leave or, for one in five, a
// timeout.
const perSession = 40

// mix returns event i of n: sessions interleaved in time as a live crowd's
// are, each with perSession events, session IDs as long as real ones
// (events.SessionIDLen), so that PostgreSQL's bytes per row are.
func mix(i, n int, start time.Time) events.Event {
	sessions := (n + perSession - 1) / perSession
	s, k := i%sessions, i/sessions
	at := start.Add(time.Duration(k)*30*time.Second + time.Duration(s)*time.Millisecond)
	e := events.Event{
		Type: events.Heartbeat, Session: fmt.Sprintf("01JZ%036d", s), User: "user-" + strconv.Itoa(s*7%(sessions*3/4+1)),
		Stage: loadgen.Stages(1)[0][:len(loadgen.Stages(1)[0])-5] + fmt.Sprintf("%05d", s%200), At: at,
	}
	switch {
	case k == 0:
		e.Type, e.Participant, e.UA, e.IP, e.Country = events.Join, "p"+strconv.Itoa(s), "Mozilla/5.0 (X11; Linux x86_64)", "203.0.113.7", "DE"
	case k == perSession-1 || i+sessions >= n:
		e.Type, e.Participant, e.Joined, e.LastSeen = events.Leave, "p"+strconv.Itoa(s), start.Add(time.Duration(s)*time.Millisecond), at
		if s%5 == 0 {
			e.Type = events.Timeout
		}
	}
	return e
}

// projectorPhase times the projector draining o.events events of the mix
// from a stream, raw COPY of as many rows into an unindexed table, and the
// seed's pattern over the same events.
func projectorPhase(ctx context.Context, e *env, r *Results) error {
	n := e.o.events
	start := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	db, err := store.Open(ctx, e.dsn, store.Options{Migrate: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if r.ProjectorEventsPerS, err = drain(ctx, e, db, n, start, 1); err != nil {
		return err
	}
	r.ProjectedEvents = n
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM viewer_sessions), pg_total_relation_size('viewer_sessions'),
		(SELECT count(*) FROM users), pg_total_relation_size('users')`).Scan(&r.PGSessionRows, &r.PGSessionBytes, &r.PGUserRows, &r.PGUserBytes); err != nil {
		return fmt.Errorf("table sizes: %w", err)
	}
	// The drain merged each row once per batch (2 of its 40 events in each
	// batch of 50,000), 20 times, so the table holds dead versions until
	// vacuumed: compacted, the size of the live rows only.
	if _, err := db.Pool.Exec(ctx, "VACUUM FULL viewer_sessions"); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT pg_total_relation_size('viewer_sessions')`).Scan(&r.PGSessionBytesCompact); err != nil {
		return fmt.Errorf("table size: %w", err)
	}
	fmt.Fprintf(e.out, "  viewer_sessions: %d rows, %d bytes with indexes (%d after VACUUM FULL); users: %d rows, %d bytes\n",
		r.PGSessionRows, r.PGSessionBytes, r.PGSessionBytesCompact, r.PGUserRows, r.PGUserBytes)
	// The same drain into emptied tables by two consumers of the group, as
	// an operator scales the projector.
	if _, err := db.Pool.Exec(ctx, "TRUNCATE viewer_sessions, users"); err != nil {
		return err
	}
	if r.Projector2EventsPerS, err = drain(ctx, e, db, n, start, 2); err != nil {
		return err
	}

	if r.CopyCeilingRowsPerS, err = copyCeiling(ctx, db.Pool, n, start); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "  raw COPY: %.0f rows/s\n", r.CopyCeilingRowsPerS)
	var stmts float64
	if r.SeedPatternEventsPerS, stmts, err = seedPattern(ctx, e, n, start); err != nil {
		return err
	}
	r.SeedPatternStatementsS = stmts
	fmt.Fprintf(e.out, "  seed pattern: %.0f events/s (%.0f statements/s)\n", r.SeedPatternEventsPerS, stmts)
	return nil
}

// drain appends n events of the mix to a fresh stream, times `consumers`
// projectors of one group draining it into db concurrently, checks the row
// count and returns events/s.
func drain(ctx context.Context, e *env, db *store.DB, n int, start time.Time, consumers int) (float64, error) {
	prefix := "vpbench-" + randomID()
	e.prefixes = append(e.prefixes, prefix)
	keys := events.NewKeys(prefix)
	t0 := time.Now()
	for lo := 0; lo < n; lo += 5000 {
		if _, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+5000, n); i++ {
				p.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream(), Values: mix(i, n, start).Values()})
			}
			return nil
		}); err != nil {
			return 0, fmt.Errorf("xadd: %w", err)
		}
	}
	fmt.Fprintf(e.out, "  %d events appended in %s\n", n, time.Since(t0).Round(time.Millisecond))
	ps := make([]*projector.Projector, consumers)
	for i := range ps {
		ps[i] = projector.New(e.rdb, keys, db, projector.Config{Consumer: fmt.Sprint("bench", i), Block: 10 * time.Millisecond})
		if err := ps[i].Init(ctx); err != nil {
			return 0, err
		}
	}
	var total atomic.Int64
	t0 = time.Now()
	g := pool.New().WithContext(ctx).WithCancelOnError()
	for _, p := range ps {
		g.Go(func(gctx context.Context) error {
			for total.Load() < int64(n) {
				k, err := p.Step(gctx)
				if err != nil {
					return fmt.Errorf("projector step: %w", err)
				}
				total.Add(int64(k))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	took := time.Since(t0)
	rate := float64(total.Load()) / took.Seconds()
	fmt.Fprintf(e.out, "  projector, %d consumer(s): %d events in %s: %.0f events/s\n", consumers, total.Load(), took.Round(time.Millisecond), rate)
	var rows int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM viewer_sessions").Scan(&rows); err != nil {
		return 0, err
	}
	if want := (n + perSession - 1) / perSession; rows != want {
		return 0, fmt.Errorf("viewer_sessions holds %d rows, want %d", rows, want)
	}
	e.dropPrefix(ctx, prefix)
	return rate, nil
}

// copyCeiling COPYs one row per event into an unindexed table shaped like
// viewer_sessions and returns rows/s.
func copyCeiling(ctx context.Context, pg *pgxpool.Pool, n int, start time.Time) (float64, error) {
	if _, err := pg.Exec(ctx, `CREATE UNLOGGED TABLE IF NOT EXISTS copy_ceiling (LIKE viewer_sessions INCLUDING DEFAULTS EXCLUDING CONSTRAINTS EXCLUDING INDEXES)`); err != nil {
		return 0, err
	}
	// UNLOGGED would flatter the ceiling; make it logged like viewer_sessions.
	if _, err := pg.Exec(ctx, `ALTER TABLE copy_ceiling SET LOGGED`); err != nil {
		return 0, err
	}
	cols := []string{"session_id", "user_id", "stage_arn", "participant_id", "joined_at", "last_seen_at", "left_at", "end_reason", "user_agent", "ip_address", "country_code"}
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		ev := mix(i, n, start)
		i++
		return []any{ev.Session, ev.User, ev.Stage, orNil(ev.Participant), orNil(ev.Joined), ev.At, orNil(ev.LastSeen),
			orNil(string(ev.Type)), orNil(ev.UA), orNil(ev.IP), orNil(ev.Country)}, nil
	})
	t0 := time.Now()
	got, err := pg.CopyFrom(ctx, pgx.Identifier{"copy_ceiling"}, cols, src)
	if err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	return float64(got) / time.Since(t0).Seconds(), nil
}

// seedPattern replays the events as the seed design wrote them: one INSERT
// per join, one UPDATE per leave (and timeout, which the seed did not have),
// nothing per heartbeat (the seed kept heartbeats in Redis only), over 32
// connections into the seed's table and indexes. A session's events go to
// one connection, in order. It stops after seedBudget and returns events/s
// (heartbeats counted as handled) and statements/s.
func seedPattern(ctx context.Context, e *env, n int, start time.Time) (float64, float64, error) {
	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		return 0, 0, err
	}
	cfg.MaxConns = 32
	pg, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer pg.Close()
	if _, err := pg.Exec(ctx, seedSchema); err != nil {
		return 0, 0, fmt.Errorf("seed schema: %w", err)
	}
	const workers, seedBudget = 32, 60 * time.Second
	ctx, cancel := context.WithTimeout(ctx, seedBudget)
	defer cancel()
	chans := make([]chan events.Event, workers)
	var mu sync.Mutex
	stmts := 0
	p := pool.New().WithContext(ctx).WithFirstError()
	for w := range chans {
		chans[w] = make(chan events.Event, 256)
		p.Go(func(ctx context.Context) error {
			for ev := range chans[w] {
				var err error
				switch ev.Type {
				case events.Join:
					_, err = pg.Exec(ctx, `INSERT INTO seed_sessions (user_id, stage_arn, participant_id, joined_at, user_agent, ip_address)
						VALUES ($1, $2, $3, $4, $5, $6)`, ev.User, ev.Stage, ev.Participant, ev.At, ev.UA, ev.IP)
				case events.Leave, events.Timeout:
					_, err = pg.Exec(ctx, `UPDATE seed_sessions SET left_at = $1,
						watch_duration_seconds = EXTRACT(EPOCH FROM ($1 - joined_at))::integer
						WHERE user_id = $2 AND stage_arn = $3 AND left_at IS NULL`, ev.LastSeen, ev.User, ev.Stage)
				default:
					continue
				}
				if err != nil {
					return err
				}
				mu.Lock()
				stmts++
				mu.Unlock()
			}
			return nil
		})
	}
	t0 := time.Now()
	handled := 0
dispatch:
	for ; handled < n; handled++ {
		ev := mix(handled, n, start)
		h := fnv.New32a()
		h.Write([]byte(ev.Session))
		select {
		case chans[h.Sum32()%workers] <- ev:
		case <-ctx.Done():
			break dispatch
		}
	}
	for _, c := range chans {
		close(c)
	}
	err = p.Wait()
	took := time.Since(t0)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return 0, 0, fmt.Errorf("seed pattern: %w", err)
	}
	return float64(handled) / took.Seconds(), float64(stmts) / took.Seconds(), nil
}

// seedSchema is the seed's viewer_sessions, made valid PostgreSQL, with its
// indexes.
const seedSchema = `
CREATE TABLE seed_sessions (
    id serial PRIMARY KEY,
    user_id varchar(100) NOT NULL,
    stage_arn varchar(255) NOT NULL,
    participant_id varchar(255),
    joined_at timestamp NOT NULL,
    left_at timestamp,
    watch_duration_seconds integer,
    user_agent text,
    ip_address inet,
    country_code varchar(2)
);
CREATE INDEX ON seed_sessions (user_id);
CREATE INDEX ON seed_sessions (stage_arn);
CREATE INDEX ON seed_sessions (joined_at);
CREATE INDEX ON seed_sessions (left_at);
CREATE INDEX ON seed_sessions (user_id, stage_arn);`

// orNil is NULL for a zero value (COPY's NULL), else the value.
func orNil[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

// lagPhase runs heartbeats at half the sustained heartbeat rate against
// ingest with a projector running, and measures each event's lag from its
// stream entry ID (the server time of the XADD, in ms) to the commit of the
// batch that holds it (the projector's AfterCommit hook).
func lagPhase(ctx context.Context, e *env, r *Results) error {
	rate := r.Heartbeat.Best.Achieved / 2
	if rate <= 0 {
		rate = 1000
		r.Notes = append(r.Notes, "lag: no heartbeat rate was measured; lag taken at 1000 heartbeats/s")
	}
	keys := events.NewKeys(e.prefix)
	// The projector starts at the stream's end: the backlog of the rate
	// searches is not what this figure is about.
	if err := e.rdb.XGroupCreateMkStream(ctx, keys.Stream(), projector.DefaultGroup, "$").Err(); err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	db, err := store.Open(ctx, e.dsn, store.Options{Migrate: true})
	if err != nil {
		return err
	}
	defer db.Close()
	var mu sync.Mutex
	var lags []time.Duration
	p := projector.New(e.rdb, keys, db, projector.Config{Consumer: "lag", AfterCommit: func(ids []string) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if msPart, _, ok := cutDash(id); ok {
				lags = append(lags, now.Sub(time.UnixMilli(msPart)))
			}
		}
		return nil
	}})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx, 10*time.Second) }()

	t := loadgen.Target{Base: e.ingest.url}
	sessions, err := loadgen.Prejoin(ctx, e.client, t, 5000, loadgen.Stages(200), "lag-"+randomID(), 64)
	if err == nil {
		var sum loadgen.Summary
		sum, err = loadgen.Run(ctx, loadgen.Config{Duration: 15 * time.Second, MaxRequests: int(rate*15) + 1, Workers: 4000,
			Timeout: 5 * time.Second, Client: e.client, Warmup: 2 * time.Second}, loadgen.Heartbeats(t, rate, sessions))
		fmt.Fprintf(e.out, "  %.0f heartbeats/s sent, p99 %.2fms, errors %d\n", sum.Rate, msf(sum.P99), sum.ErrorCount())
	}
	time.Sleep(2 * time.Second) // let the last batch commit (Block is 1 s)
	stop()
	if perr := <-done; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lags)
	r.LagRateRPS = rate
	r.LagP50Ms, r.LagP99Ms = msf(loadgen.Percentile(lags, 0.5)), msf(loadgen.Percentile(lags, 0.99))
	fmt.Fprintf(e.out, "  lag over %d events: p50 %.1fms p99 %.1fms\n", len(lags), r.LagP50Ms, r.LagP99Ms)
	return nil
}

func cutDash(id string) (int64, string, bool) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			n, err := strconv.ParseInt(id[:i], 10, 64)
			return n, id[i+1:], err == nil
		}
	}
	return 0, "", false
}
