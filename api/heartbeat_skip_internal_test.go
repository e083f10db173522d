package api

import (
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// TestBeatCacheKeepsFreshEntriesAcrossRotations: wherever a step falls
// between two swaps of generations, its entry answers until exactly half an
// interval after it, and not after.
func TestBeatCacheKeepsFreshEntriesAcrossRotations(t *testing.T) {
	const half = 15 * time.Second
	base := time.UnixMilli(1_760_000_000_000)
	for offset := time.Duration(0); offset < 3*half; offset += 700 * time.Millisecond {
		b := newBeatCache(2 * half)
		id := sessionKey{id: ulid.Make()}
		b.fresh(sessionKey{id: ulid.Make()}, base) // the shards' first swap is due at base+half
		at := base.Add(offset)
		b.put(id, at, at, 7)
		for _, probe := range []time.Duration{0, half / 2, half - time.Millisecond} {
			if n, ok := b.fresh(id, at.Add(probe)); !ok || n != 7 {
				t.Fatalf("step at +%s: not fresh %s later", offset, probe)
			}
		}
		if _, ok := b.fresh(id, at.Add(half)); ok {
			t.Fatalf("step at +%s: still fresh half an interval later", offset)
		}
		if n := b.len(at.Add(2 * half)); n != 0 {
			t.Fatalf("step at +%s: %d entries held two half-intervals later", offset, n)
		}
	}
}

// TestBeatCacheLeaveWinsARace: a heartbeat step that started before a leave
// and finishes after it does not bring the session back.
func TestBeatCacheLeaveWinsARace(t *testing.T) {
	b := newBeatCache(30 * time.Second)
	id, now := sessionKey{id: ulid.Make()}, time.Now()
	b.forget(id, now, now, true)
	b.put(id, now.Add(-time.Millisecond), now, 3)
	b.put(id, now.Add(time.Millisecond), now, 3)
	if _, ok := b.fresh(id, now); ok {
		t.Fatal("a closed session was answered from memory")
	}
}

// TestBeatCacheConcurrent exercises the shards' locking under -race.
func TestBeatCacheConcurrent(t *testing.T) {
	b := newBeatCache(30 * time.Second)
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := sessionKey{id: ulid.Make()}
				at := now.Add(time.Duration(w*500+i) * 10 * time.Millisecond)
				b.put(id, at, at, int64(i))
				b.fresh(id, at)
				if i%3 == 0 {
					b.forget(id, at, at, i%2 == 0)
				}
			}
		})
	}
	wg.Wait()
	if b.len(now) == 0 {
		t.Fatal("nothing held")
	}
}
