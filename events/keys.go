package events

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"time"
)

// Keys names the Redis keys of one partition of a deployment. Each key
// starts with the deployment's prefix and carries the partition's hash tag
// {p<N>}, so that every key of a partition (its stream, the presence of its
// stages, its session buckets, capacities, peaks and dead letters) lies in
// one Redis Cluster slot and one Lua step may touch any of them; every key a
// step touches is passed to it in KEYS (scripts.go). Stages are spread over
// partitions by PartitionOf.
type Keys struct {
	part int
	base string // "<prefix>:{p<N>}:"
}

// NewKeys returns the key names of partition 0 of prefix (REDIS_PREFIX): the
// only partition of a deployment with PARTITIONS=1.
func NewKeys(prefix string) Keys { return PartitionKeys(prefix, 0) }

// PartitionKeys returns the key names of partition p of prefix.
func PartitionKeys(prefix string, p int) Keys {
	return Keys{part: p, base: prefix + ":{p" + strconv.Itoa(p) + "}:"}
}

// Partition is the partition the keys belong to.
func (k Keys) Partition() int { return k.part }

// Base is the common beginning of the partition's keys, "<prefix>:{p<N>}:".
func (k Keys) Base() string { return k.base }

// Stream is the partition's event log.
func (k Keys) Stream() string { return k.base + "events" }

// DeadLetter holds entries of the partition's stream that could not be
// projected, with the reason.
func (k Keys) DeadLetter() string { return k.base + "dead" }

// Lease is held by the projector reading the partition (projector.Leases).
func (k Keys) Lease() string { return k.base + "lease" }

// Projectors (partition 0 only) is the sorted set of live projector
// processes, scored by when their announcement expires (Unix ms): how many
// share the partitions.
func (k Keys) Projectors() string { return k.base + "projectors" }

// Placement (partition 0 only) is the hash stage ARN -> its group's master
// ARN, for the stages that name a master: whoever places a stage by its
// master (Stream.KeysOf) reads it.
func (k Keys) Placement() string { return k.base + "placement" }

// Groups (partition 0 only) is the set of the masters of every group: the
// index GET /v1/live reads the groups from.
func (k Keys) Groups() string { return k.base + "groups" }

// Moved is the hash stage ARN -> the partition it moved to when it joined
// or left a group (placed by another ARN since): a join routed here by a
// stale placement is refused and routed again.
func (k Keys) Moved() string { return k.base + "moved" }

// Group is the set of the stages of master's group (the master included),
// in the master's partition.
func (k Keys) Group(master string) string { return k.base + "group:" + StageHash(master) }

// Reserved is a stage's sorted set of the users holding a seat on it (seat
// assignment), scored by when the seat expires (Unix ms).
func (k Keys) Reserved(stage string) string { return k.reserved(StageHash(stage)) }

func (k Keys) reserved(h string) string { return k.base + "reserved:" + h }

// Meta (partition 0 only) records the deployment's layout: the number of
// partitions it was created with (CheckPartitions).
func (k Keys) Meta() string { return k.base + "meta" }

// SessionBuckets is how many hashes of a partition hold its session records.
// Up to about 128 records each (Redis's default hash-max-listpack-entries),
// that is up to ~130,000 open sessions per partition, each hash stays a
// compact listpack: about half the memory of one large hash.
const SessionBuckets = 32 * 32

// Sessions is the hash holding session sid's record (the user ID; the stage
// and the join time are in the ID itself). The bucket is the ID's
// characters 29-30 (SessionID), UserBucket of its user.
func (k Keys) Sessions(sid string) string {
	if len(sid) != SessionIDLen {
		return k.base + "sessions:"
	}
	return k.SessionBucket(sid[28:30])
}

// SessionBucket is the session hash of bucket b (two Crockford characters).
func (k Keys) SessionBucket(b string) string { return k.base + "sessions:" + b }

// AllSessions lists every session bucket of the partition.
func (k Keys) AllSessions() []string {
	out := make([]string, 0, SessionBuckets)
	for _, a := range crockford {
		for _, b := range crockford {
			out = append(out, k.SessionBucket(string(a)+string(b)))
		}
	}
	return out
}

// Stages is a sorted set of the partition's stage ARNs scored by their last
// join or heartbeat (Unix ms); leaves and timeouts do not refresh it.
func (k Keys) Stages() string { return k.base + "stages" }

// Capacity is a hash: stage ARN -> the most viewers it admits.
func (k Keys) Capacity() string { return k.base + "capacity" }

// StageNames is the hash StageHash -> ARN of the stages with open sessions,
// which gives the events their ARN back from a session ID.
func (k Keys) StageNames() string { return k.base + "stagenames" }

// Present is a stage's sorted set of user IDs scored by last-seen time (Unix
// ms): the one structure behind count, list and "who is silent".
func (k Keys) Present(stage string) string { return k.present(StageHash(stage)) }

func (k Keys) present(h string) string { return k.base + "present:" + h }

// Members is a stage's hash: user ID -> the user's open session ID.
func (k Keys) Members(stage string) string { return k.members(StageHash(stage)) }

func (k Keys) members(h string) string { return k.base + "members:" + h }

// Peak is the hash of a stage's highest live counts in the hour holding t,
// one field per minute (PeakField): one key per stage-hour rather than per
// stage-minute.
func (k Keys) Peak(stage string, t time.Time) string { return k.peak(StageHash(stage), t) }

func (k Keys) peak(h string, t time.Time) string {
	return k.base + "peak:" + h + ":" + strconv.FormatInt(t.UnixMilli()/3_600_000, 10)
}

// PeakField is the field of Peak(stage, t) for the minute holding t.
func PeakField(t time.Time) string { return strconv.FormatInt(t.UnixMilli()/60_000, 10) }

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// StageHashLen is the length of StageHash.
const StageHashLen = 10

// StageHash names a stage in key names and session IDs: the first 50 bits of
// SHA-256 of its ARN in Crockford base32. Whoever knows the ARN computes the
// stage's keys with no lookup; two ARNs of one partition that share a hash
// while both have open sessions are told apart by StageNames (the join of
// the second is refused with ErrStageCollision: about one chance in 10^5 at
// a million live stages).
func StageHash(stage string) string {
	// an ARN (at most 128 bytes through the API, checkStage) is copied to
	// the stack, not to the heap as a conversion of a string this long
	// would be
	var buf [256]byte
	var sum [sha256.Size]byte
	if len(stage) <= len(buf) {
		sum = sha256.Sum256(append(buf[:0], stage...))
	} else {
		sum = sha256.Sum256([]byte(stage))
	}
	n := binary.BigEndian.Uint64(sum[:8]) >> 14 // the first 50 bits
	var b [StageHashLen]byte
	for i := StageHashLen - 1; i >= 0; i-- {
		b[i] = crockford[n&31]
		n >>= 5
	}
	return string(b[:])
}

// UserBucket is the session bucket of user's sessions (FNV-1a mod
// SessionBuckets, two Crockford characters): a user's old and new session
// of a stage share it, so a join names it in advance.
func UserBucket(user string) string {
	n := fnv32(user) % SessionBuckets
	return string([]byte{crockford[n>>5], crockford[n&31]})
}

// PartitionOf is the partition of a stage placed by key (its own ARN, or
// the ARN of its group's master) among n: FNV-1a of the key mod n.
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(fnv32(key) % uint32(n))
}

// fnv32 is FNV-1a (hash/fnv's New32a), without its allocation.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
