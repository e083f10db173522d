package events_test

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/viewpulse/viewpulse/events"
)

// TestSessionIDsAreUnguessable: of 100,000 IDs minted in a tight loop, no two
// of the same millisecond have random parts less than 2^32 apart (monotonic
// entropy would put each a small random step above the previous one), the
// time part is the join time, and the bucket characters spread.
func TestSessionIDsAreUnguessable(t *testing.T) {
	const n = 100_000
	byMS := map[uint64][][10]byte{}
	buckets := map[string]bool{}
	start := time.Now()
	for range n {
		now := time.Now()
		sid := events.NewSessionID(now)
		id, err := ulid.ParseStrict(sid)
		if err != nil {
			t.Fatalf("%q: %v", sid, err)
		}
		if id.Time() != ulid.Timestamp(now) {
			t.Fatalf("%q: time part %d, want the join's %d", sid, id.Time(), ulid.Timestamp(now))
		}
		var r [10]byte
		copy(r[:], id[6:])
		byMS[id.Time()] = append(byMS[id.Time()], r)
		buckets[sid[len(sid)-2:]] = true
	}
	t.Logf("%d IDs in %s over %d milliseconds", n, time.Since(start), len(byMS))
	crowded := 0
	for ms, rs := range byMS {
		if len(rs) < 2 {
			continue
		}
		crowded++
		slices.SortFunc(rs, func(a, b [10]byte) int { return slices.Compare(a[:], b[:]) })
		for i := 1; i < len(rs); i++ {
			if d := distance(rs[i-1], rs[i]); d < 1<<32 {
				t.Fatalf("ms %d: random parts %x and %x are %d apart (< 2^32)", ms, rs[i-1], rs[i], d)
			}
		}
	}
	if crowded == 0 {
		t.Fatal("no millisecond held two IDs: the test checked nothing")
	}
	// 1,024 buckets, 100,000 uniform draws: all are hit.
	if len(buckets) != events.SessionBuckets {
		t.Fatalf("IDs fell in %d buckets, want all %d", len(buckets), events.SessionBuckets)
	}
}

// distance returns b-a for 80-bit big-endian a <= b, saturated at 2^64-1.
func distance(a, b [10]byte) uint64 {
	ahi, bhi := binary.BigEndian.Uint16(a[:2]), binary.BigEndian.Uint16(b[:2])
	alo, blo := binary.BigEndian.Uint64(a[2:]), binary.BigEndian.Uint64(b[2:])
	switch {
	case bhi == ahi:
		return blo - alo
	case bhi == ahi+1 && blo < alo:
		return blo - alo // wraps: the exact difference, below 2^64
	}
	return ^uint64(0)
}

// BenchmarkNewSessionID: the cost of minting one ID (crypto/rand per ID).
func BenchmarkNewSessionID(b *testing.B) {
	now := time.Now()
	for b.Loop() {
		_ = events.NewSessionID(now)
	}
}
