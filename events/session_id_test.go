package events_test

import (
	"encoding/binary"
	"slices"
	"strconv"
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
	for i := range n {
		now := time.Now()
		sid := events.NewSessionID(now, 0, "user-"+strconv.Itoa(i), "arn:aws:ivs:us-east-1:1:stage/x")
		id, err := ulid.ParseStrict(sid[:26])
		if err != nil {
			t.Fatalf("%q: %v", sid, err)
		}
		if id.Time() != ulid.Timestamp(now) {
			t.Fatalf("%q: time part %d, want the join's %d", sid, id.Time(), ulid.Timestamp(now))
		}
		var r [10]byte
		copy(r[:], id[6:])
		byMS[id.Time()] = append(byMS[id.Time()], r)
		buckets[sid[28:30]] = true
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
		_ = events.NewSessionID(now, 3, "user-1", "arn:aws:ivs:us-east-1:123456789012:stage/abcdEFGH1234")
	}
}

// TestSessionIDRoutes: an ID names its partition, its user's bucket and its
// stage's hash, and ParseSessionID refuses every other form.
func TestSessionIDRoutes(t *testing.T) {
	const stage = "arn:aws:ivs:us-east-1:123456789012:stage/abcdEFGH1234"
	for _, p := range []int{0, 1, 11, 31, 32, 1023} {
		sid := events.NewSessionID(time.Now(), p, "alice", stage)
		if len(sid) != events.SessionIDLen {
			t.Fatalf("%q: %d characters, want %d", sid, len(sid), events.SessionIDLen)
		}
		ref, err := events.ParseSessionID(sid)
		if err != nil {
			t.Fatalf("%q: %v", sid, err)
		}
		want := events.SessionRef{Partition: p, Bucket: events.UserBucket("alice"), Stage: events.StageHash(stage)}
		if ref != want {
			t.Fatalf("%q parses to %+v, want %+v", sid, ref, want)
		}
	}
	good := events.NewSessionID(time.Now(), 0, "alice", stage)
	for _, bad := range []string{
		"", good[:26], good[:39], good + "0", // lengths
		"8" + good[1:],              // ULID overflow
		good[:30] + "abcdefghij",    // lower case
		good[:30] + "UUUUUUUUUU",    // U is not Crockford
		good[:27] + "-" + good[28:], // punctuation
	} {
		if _, err := events.ParseSessionID(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestStageHashAndBucketsAreStable: the hash and bucket functions are part
// of the stored layout (key names, session IDs): they must never change.
func TestStageHashAndBucketsAreStable(t *testing.T) {
	if h := events.StageHash("arn:aws:ivs:us-east-1:123456789012:stage/abcdEFGH1234"); len(h) != events.StageHashLen {
		t.Fatalf("hash %q", h)
	}
	got := []string{events.StageHash("a"), events.UserBucket("alice"), strconv.Itoa(events.PartitionOf("a", 12))}
	want := []string{stableHashA, stableBucketAlice, stablePartitionA}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q: the layout changed, and every deployment's keys with it", got, want)
	}
}

// Computed independently (Python's hashlib and a hand-written FNV-1a).
const stableHashA, stableBucketAlice, stablePartitionA = "SABR24PA3E", "Z7", "4"
