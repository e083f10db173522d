package events

import (
	"strconv"
	"time"
)

// Keys names every Redis key of one deployment. Each key starts with the
// deployment's prefix and carries the hash tag {0} (partition 0), so that a
// stage's presence keys and the stream share one Redis Cluster slot and one Lua
// script may touch them all. When the stream is split into N partitions the
// tag becomes the partition number; nothing else changes.
type Keys struct {
	base string // "<prefix>:{0}:"
}

// NewKeys returns the key names for prefix (REDIS_PREFIX).
func NewKeys(prefix string) Keys {
	return Keys{base: prefix + ":{0}:"}
}

// Base is the common beginning of every key; the Lua scripts build the
// per-stage keys from it.
func (k Keys) Base() string { return k.base }

// Stream is the event log.
func (k Keys) Stream() string { return k.base + "events" }

// DeadLetter holds entries that could not be projected, with the reason.
func (k Keys) DeadLetter() string { return k.base + "dead" }

// SessionBuckets is how many hashes hold the session records. Up to about
// 128 records each (Redis's default hash-max-listpack-entries), that is up to
// ~130,000 open sessions, each hash stays a compact listpack: about half the
// memory of one large hash.
const SessionBuckets = 32 * 32

// Sessions is the hash holding session sid's record, "stage_id|user" (the
// join time is the session ID's ULID time). The bucket is the ID's last two
// characters, which are random.
func (k Keys) Sessions(sid string) string {
	return k.base + "sessions:" + sid[max(0, len(sid)-2):]
}

// AllSessions lists every session bucket.
func (k Keys) AllSessions() []string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	out := make([]string, 0, SessionBuckets)
	for _, a := range crockford {
		for _, b := range crockford {
			out = append(out, k.base+"sessions:"+string(a)+string(b))
		}
	}
	return out
}

// Stages is a sorted set of stage ARNs scored by their last join or heartbeat
// (Unix ms); leaves and timeouts do not refresh it.
func (k Keys) Stages() string { return k.base + "stages" }

// Capacity is a hash: stage ARN -> the most viewers it admits.
func (k Keys) Capacity() string { return k.base + "capacity" }

// StageIDs and StageNames intern stage ARNs (ARN <-> small number) for the
// session records.
func (k Keys) StageIDs() string { return k.base + "stageids" }

// StageNames is the reverse of StageIDs.
func (k Keys) StageNames() string { return k.base + "stagenames" }

// Present is a stage's sorted set of user IDs scored by last-seen time (Unix
// ms): the one structure behind count, list and "who is silent".
func (k Keys) Present(stage string) string { return k.base + "present:" + stage }

// Members is a stage's hash: user ID -> the user's open session ID.
func (k Keys) Members(stage string) string { return k.base + "members:" + stage }

// Peak is the hash of a stage's highest live counts in the hour holding t,
// one field per minute (PeakField): one key per stage-hour rather than per
// stage-minute.
func (k Keys) Peak(stage string, t time.Time) string {
	return k.base + "peak:" + stage + ":" + strconv.FormatInt(t.UnixMilli()/3_600_000, 10)
}

// PeakField is the field of Peak(stage, t) for the minute holding t.
func PeakField(t time.Time) string { return strconv.FormatInt(t.UnixMilli()/60_000, 10) }
