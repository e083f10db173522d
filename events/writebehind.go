package events

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
)

// WriteBehind answers the common heartbeat, one that records no event, from
// memory and writes its presence to Redis afterwards, in one script call per
// partition every flush interval (DESIGN, invariant 1: such a heartbeat is
// in Redis within the flush interval of its answer, not before it).
//
// A heartbeat is answered here only when all of this holds, else it runs the
// ordinary Redis step (a miss), whose outcome teaches the cache again:
//   - this process ran a successful join or heartbeat step of the session, or
//     flushed its presence, and nothing since said it closed (a leave here,
//     a 404, a flush that found it gone);
//   - the session's last presence known here is younger than the timeout
//     less Margin, so no sweep can have closed it: Redis holds a presence
//     at least that recent, and this heartbeat's flush lands before the
//     timeout could pass;
//   - the heartbeat falls in the same record interval as that presence
//     (Stream.RecordEvery), so the step would append no event: every event
//     still goes through its Redis step before its answer;
//   - the stage's count known here is younger than CountMaxAge (refreshed by
//     every flush that carries one of its viewers);
//   - the last flush did not fail: while Redis is unreachable, heartbeats
//     take the step, and get 503 like every other write.
//
// What is lost when the process dies: the presence of the heartbeats
// answered since the last flush (at most the flush interval), never an
// event. A flush never brings back a closed or expired session: it refreshes
// the presence of a user only while the stage's members hash still names
// this session and its presence has not yet expired, and reports the others
// as gone, which are then forgotten here.
type WriteBehind struct {
	s     *Stream
	every time.Duration
	// Margin and CountMaxAge as above; set them before the first heartbeat.
	Margin, CountMaxAge time.Duration

	shards [64]wbShard

	countsMu sync.Mutex
	counts   map[string]*stageCount // partition (2 characters) + StageHash

	failing atomic.Bool
	hits    atomic.Int64
	misses  atomic.Int64
	flushes atomic.Int64
	errors  atomic.Int64
	flushed atomic.Int64 // presences written
	gone    atomic.Int64 // sessions a flush found closed
}

type wbShard struct {
	mu      sync.Mutex
	m       map[string]*wbEntry
	pending []*wbEntry
}

type wbEntry struct {
	sid, user string
	stage     *stageCount
	joined    int64 // ms, the ULID's time
	last      int64 // ms: latest presence written or queued by this process
	queued    bool
}

type stageCount struct {
	part  int
	hash  string
	count atomic.Int64
	at    atomic.Int64 // ms of the step or flush that counted it
}

// Write-behind defaults.
const (
	DefaultFlushEvery  = 250 * time.Millisecond
	DefaultWBMargin    = 5 * time.Second
	DefaultCountMaxAge = 2 * time.Second
	// flushChunk bounds one flush script's entries, so that no call holds
	// Redis for long (~3 commands each).
	flushChunk = 1000
)

// NewWriteBehind returns a write-behind cache over s flushing every `every`
// (0: DefaultFlushEvery). Run its flush loop with Run.
func (s *Stream) NewWriteBehind(every time.Duration) *WriteBehind {
	if every <= 0 {
		every = DefaultFlushEvery
	}
	w := &WriteBehind{s: s, every: every, Margin: max(DefaultWBMargin, 4*every), CountMaxAge: max(DefaultCountMaxAge, 2*every),
		counts: map[string]*stageCount{}}
	for i := range w.shards {
		w.shards[i].m = map[string]*wbEntry{}
	}
	return w
}

// Every is the flush interval.
func (w *WriteBehind) Every() time.Duration { return w.every }

func (w *WriteBehind) shard(sid string) *wbShard {
	// the ULID's last character is random
	return &w.shards[sid[25]&63]
}

// Heartbeat answers a heartbeat of sid at now from memory and queues its
// presence: ok is false when it must take the Redis step instead.
func (w *WriteBehind) Heartbeat(sid string, now time.Time) (viewers int64, ok bool) {
	if len(sid) != SessionIDLen || w.failing.Load() {
		w.misses.Add(1)
		return 0, false
	}
	t := now.UnixMilli()
	sh := w.shard(sid)
	sh.mu.Lock()
	e := sh.m[sid]
	if e == nil || !w.usable(e, t) {
		sh.mu.Unlock()
		w.misses.Add(1)
		return 0, false
	}
	if t > e.last {
		e.last = t
	}
	if !e.queued {
		e.queued = true
		sh.pending = append(sh.pending, e)
	}
	n := e.stage.count.Load()
	sh.mu.Unlock()
	w.hits.Add(1)
	return n, true
}

// usable: e may answer a heartbeat at t (ms).
func (w *WriteBehind) usable(e *wbEntry, t int64) bool {
	if t-e.last >= w.s.timeout.Milliseconds()-w.Margin.Milliseconds() {
		return false // the sweep may have closed it, or soon will
	}
	if every := w.s.RecordEvery.Milliseconds(); every <= 0 || (t-e.joined)/every != (e.last-e.joined)/every {
		return false // the step would append a heartbeat event
	}
	return t-e.stage.at.Load() < w.CountMaxAge.Milliseconds()
}

// Learn records a successful join or heartbeat step of session sid of user,
// started at `at`, which counted viewers.
func (w *WriteBehind) Learn(sid, user string, at time.Time, viewers int64) {
	ref, err := ParseSessionID(sid)
	if err != nil || ref.Partition >= len(w.s.parts) {
		return
	}
	t := at.UnixMilli()
	st := w.stage(ref.Partition, sid[26:28]+ref.Stage, ref.Stage)
	st.set(viewers, t)
	joined := int64(ulid.MustParseStrict(sid[:26]).Time()) // ParseSessionID checked it
	sh := w.shard(sid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[sid]
	if e == nil {
		e = &wbEntry{sid: sid, user: user, joined: joined, last: t}
		sh.m[sid] = e
	}
	e.stage = st
	if t > e.last {
		e.last = t
	}
}

// Forget drops sid (left, or not found): its next heartbeat takes the step.
func (w *WriteBehind) Forget(sid string) {
	if len(sid) != SessionIDLen {
		return
	}
	sh := w.shard(sid)
	sh.mu.Lock()
	delete(sh.m, sid)
	sh.mu.Unlock()
}

func (w *WriteBehind) stage(part int, key, hash string) *stageCount {
	w.countsMu.Lock()
	defer w.countsMu.Unlock()
	st := w.counts[key]
	if st == nil {
		st = &stageCount{part: part, hash: hash}
		w.counts[key] = st
	}
	return st
}

// set keeps the newer of the stored count and n counted at t.
func (st *stageCount) set(n, t int64) {
	if t >= st.at.Load() {
		st.count.Store(n)
		st.at.Store(t)
	}
}

// Run flushes every interval until ctx ends, then once more with a fresh
// context of at most the timeout: a stopping process writes what it has
// answered (call it after the HTTP server has drained).
func (w *WriteBehind) Run(ctx context.Context) {
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	prune := time.Now()
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = w.Flush(last)
			cancel()
			return
		case <-tick.C:
		}
		fctx, cancel := context.WithTimeout(ctx, w.Margin/2)
		_ = w.Flush(fctx)
		cancel()
		if time.Since(prune) > 5*time.Second {
			w.prune(w.s.Now())
			prune = time.Now()
		}
	}
}

// prune drops the entries no heartbeat could use any more and the stage
// counts nothing refreshed for a while: memory is bounded by the sessions
// seen here within the timeout.
func (w *WriteBehind) prune(now time.Time) {
	t := now.UnixMilli()
	horizon := w.s.timeout.Milliseconds()
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		for sid, e := range sh.m {
			if t-e.last >= horizon && !e.queued {
				delete(sh.m, sid)
			}
		}
		sh.mu.Unlock()
	}
	w.countsMu.Lock()
	for k, st := range w.counts {
		if t-st.at.Load() >= horizon {
			delete(w.counts, k)
		}
	}
	w.countsMu.Unlock()
}

type wbItem struct {
	e        *wbEntry
	user     string
	sid      string
	ts       int64
	stageKey *stageCount
}

// Flush writes the queued presences now, one script call per partition and
// chunk. Entries of a failed call are queued again (with their newest
// presence) and heartbeats take the Redis step until a flush succeeds.
func (w *WriteBehind) Flush(ctx context.Context) error {
	var items []wbItem
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		for _, e := range sh.pending {
			e.queued = false
			items = append(items, wbItem{e: e, user: e.user, sid: e.sid, ts: e.last, stageKey: e.stage})
		}
		sh.pending = sh.pending[:0]
		sh.mu.Unlock()
	}
	if len(items) == 0 {
		// nothing queued (what failed was forgotten since): the fast path
		// comes back once Redis answers
		if w.failing.Load() && w.s.rdb.Ping(ctx).Err() == nil {
			w.failing.Store(false)
		}
		return nil
	}
	w.flushes.Add(1)
	// group by partition, then stage
	byPart := map[int]map[*stageCount][]wbItem{}
	for _, it := range items {
		p := it.stageKey.part
		if byPart[p] == nil {
			byPart[p] = map[*stageCount][]wbItem{}
		}
		byPart[p][it.stageKey] = append(byPart[p][it.stageKey], it)
	}
	var firstErr error
	for p, stages := range byPart {
		var chunk []*stageCount
		size := 0
		send := func() {
			if len(chunk) == 0 {
				return
			}
			if err := w.flushChunk(ctx, p, chunk, stages); err != nil && firstErr == nil {
				firstErr = err
			}
			chunk, size = chunk[:0], 0
		}
		for st, its := range stages {
			if size > 0 && size+len(its) > flushChunk {
				send()
			}
			chunk = append(chunk, st)
			size += len(its)
		}
		send()
	}
	w.failing.Store(firstErr != nil)
	return firstErr
}

func (w *WriteBehind) flushChunk(ctx context.Context, part int, chunk []*stageCount, stages map[*stageCount][]wbItem) error {
	k := w.s.parts[part]
	f := &w.s.fixed[part]
	now := w.s.Now().UnixMilli()
	keys := []string{f[1], f[2]}
	args := []any{now, w.s.timeout.Milliseconds()}
	for _, st := range chunk {
		its := stages[st]
		keys = append(keys, k.present(st.hash), k.members(st.hash))
		args = append(args, st.hash, len(its))
		for _, it := range its {
			args = append(args, it.user, it.sid, it.ts)
		}
	}
	res, err := presenceScript.Run(ctx, w.s.rdb, keys, args...).Slice()
	if err != nil || len(res) != 2*len(chunk) {
		if err == nil {
			err = fmt.Errorf("presence flush: %d replies for %d stages", len(res), len(chunk))
		}
		w.errors.Add(1)
		w.requeue(chunk, stages)
		return fmt.Errorf("presence flush: %w", err)
	}
	for i, st := range chunk {
		its := stages[st]
		if n, ok := res[2*i].(int64); ok {
			st.set(n, now)
		}
		gone, _ := res[2*i+1].([]any)
		for _, g := range gone {
			if j, ok := g.(int64); ok && j >= 1 && int(j) <= len(its) {
				w.drop(its[j-1].e)
			}
		}
		w.gone.Add(int64(len(gone)))
		w.flushed.Add(int64(len(its) - len(gone)))
	}
	return nil
}

// requeue queues the entries of a failed chunk again.
func (w *WriteBehind) requeue(chunk []*stageCount, stages map[*stageCount][]wbItem) {
	for _, st := range chunk {
		for _, it := range stages[st] {
			sh := w.shard(it.sid)
			sh.mu.Lock()
			if sh.m[it.sid] == it.e && !it.e.queued {
				it.e.queued = true
				sh.pending = append(sh.pending, it.e)
			}
			sh.mu.Unlock()
		}
	}
}

// drop forgets e if it is still the entry of its session.
func (w *WriteBehind) drop(e *wbEntry) {
	sh := w.shard(e.sid)
	sh.mu.Lock()
	if sh.m[e.sid] == e {
		delete(sh.m, e.sid)
	}
	sh.mu.Unlock()
}

// WriteBehindStats are the cache's counters since it started.
type WriteBehindStats struct {
	Hits, Misses, Flushes, FlushErrors, Flushed, Gone int64
	Sessions, Pending                                 int
	Failing                                           bool
}

// Stats reads the counters and sizes.
func (w *WriteBehind) Stats() WriteBehindStats {
	st := WriteBehindStats{Hits: w.hits.Load(), Misses: w.misses.Load(), Flushes: w.flushes.Load(),
		FlushErrors: w.errors.Load(), Flushed: w.flushed.Load(), Gone: w.gone.Load(), Failing: w.failing.Load()}
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		st.Sessions += len(sh.m)
		st.Pending += len(sh.pending)
		sh.mu.Unlock()
	}
	return st
}
