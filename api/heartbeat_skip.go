package api

import (
	"errors"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/viewpulse/viewpulse/events"
)

// A heartbeat sooner than half the heartbeat interval after the last step
// this process ran for its session is answered 200 from memory, with the
// count that step returned, and costs Redis nothing: presence was refreshed
// at most half an interval ago, well within the timeout, so skipping it
// loses nothing (DESIGN, "Player trust"). Each ingest process skips on its
// own; a session whose heartbeats alternate between processes is simply
// skipped less.
//
// beatCache is what that needs: session ID -> time of the last join or
// heartbeat step that succeeded for it here, and the count it returned. Only
// a step that succeeded adds an entry, so invented session IDs cannot grow
// it; a leave or a 404 drops it. Each shard keeps two generations of maps and
// swaps them every half interval, dropping the older one, whose every entry
// is then at least half an interval old: memory is bounded by the sessions
// that ran a step through this process within the last interval.
type beatCache struct {
	half   time.Duration
	shards [16]beatShard
}

type beatShard struct {
	mu        sync.Mutex
	cur, prev map[sessionKey]beat
	rotateAt  time.Time
}

type beat struct {
	at      time.Time // when the step started
	viewers int64
	// gone marks a session this process closed (leave): a heartbeat step
	// racing the leave must not bring it back. A closed session never
	// reopens (a rejoin after a leave mints a new ID).
	gone bool
}

func newBeatCache(heartbeatEvery time.Duration) *beatCache {
	return &beatCache{half: heartbeatEvery / 2}
}

func (b *beatCache) shard(id sessionKey) *beatShard { return &b.shards[id.id[15]&15] }

// fresh returns the count cached for id when its last step is younger than
// half the interval at now.
func (b *beatCache) fresh(id sessionKey, now time.Time) (int64, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.rotate(now, b.half)
	e, ok := sh.cur[id]
	if !ok {
		e, ok = sh.prev[id]
	}
	if !ok || e.gone || now.Sub(e.at) >= b.half {
		return 0, false
	}
	return e.viewers, true
}

// put records a step for id that started at `at` and returned viewers.
func (b *beatCache) put(id sessionKey, at, now time.Time, viewers int64) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.rotate(now, b.half)
	if e, ok := sh.get(id); ok && (e.gone || e.at.After(at)) {
		return // closed for good, or a later step is already recorded
	}
	delete(sh.prev, id)
	sh.cur[id] = beat{at: at, viewers: viewers}
}

// forget drops id; closed (this process closed it at `at`) leaves a marker
// for half an interval, so that a heartbeat step racing the leave cannot
// cache it again.
func (b *beatCache) forget(id sessionKey, at, now time.Time, closed bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.rotate(now, b.half)
	delete(sh.prev, id)
	if closed {
		sh.cur[id] = beat{at: at, gone: true}
	} else {
		delete(sh.cur, id)
	}
}

// len counts the entries held (fresh or not yet dropped), for the gauge.
func (b *beatCache) len(now time.Time) int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		sh.rotate(now, b.half)
		n += len(sh.cur) + len(sh.prev)
		sh.mu.Unlock()
	}
	return n
}

func (sh *beatShard) get(id sessionKey) (beat, bool) {
	if e, ok := sh.cur[id]; ok {
		return e, true
	}
	e, ok := sh.prev[id]
	return e, ok
}

// rotate swaps generations once per half interval. Entries go into cur; at a
// swap, prev holds only entries added more than half an interval ago, which
// are stale, and is dropped.
func (sh *beatShard) rotate(now time.Time, half time.Duration) {
	switch {
	case sh.cur == nil:
		sh.cur, sh.rotateAt = map[sessionKey]beat{}, now.Add(half)
	case !now.Before(sh.rotateAt.Add(half)): // idle for a whole generation: both stale
		sh.cur, sh.prev, sh.rotateAt = map[sessionKey]beat{}, nil, now.Add(half)
	case !now.Before(sh.rotateAt):
		sh.prev, sh.cur, sh.rotateAt = sh.cur, map[sessionKey]beat{}, sh.rotateAt.Add(half)
	}
}

// skipHeartbeat answers whether a heartbeat for sid can be answered from
// memory, and with which count.
func (s *server) skipHeartbeat(sid string) (int64, bool) {
	if s.NoHeartbeatSkip {
		return 0, false
	}
	id, err := parseSessionKey(sid)
	if err != nil {
		return 0, false
	}
	n, ok := s.beats.fresh(id, s.now())
	if ok {
		s.trust.skipped.Inc()
	}
	return n, ok
}

// stepRan records the outcome of a join or heartbeat step for sid that
// started at `at`: a success is remembered, a session not found forgotten.
func (s *server) stepRan(sid string, at time.Time, viewers int64, err error) {
	if s.NoHeartbeatSkip {
		return
	}
	id, perr := parseSessionKey(sid)
	switch {
	case perr != nil:
	case err == nil:
		s.beats.put(id, at, s.now(), viewers)
	case errors.Is(err, events.ErrSessionNotFound):
		s.beats.forget(id, at, s.now(), false)
	}
}

// sessionLeft forgets sid after a leave step that started at `at`; closed:
// the step closed it.
func (s *server) sessionLeft(sid string, at time.Time, closed bool) {
	if s.NoHeartbeatSkip {
		return
	}
	if id, err := parseSessionKey(sid); err == nil {
		s.beats.forget(id, at, s.now(), closed)
	}
}

// sessionKey is a session ID as the cache's map key: its ULID and its
// routing part (events.SessionRef), 30 bytes instead of a 40-byte string.
type sessionKey struct {
	id    ulid.ULID
	route [events.SessionIDLen - 26]byte
}

func parseSessionKey(sid string) (sessionKey, error) {
	var k sessionKey
	if _, err := events.ParseSessionID(sid); err != nil {
		return k, err
	}
	id, err := ulid.ParseStrict(sid[:26])
	if err != nil {
		return k, err
	}
	k.id = id
	copy(k.route[:], sid[26:])
	return k, nil
}
