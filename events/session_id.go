package events

import (
	"crypto/rand"
	"errors"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// SessionIDLen is the length of a session ID: a ULID (26 characters), the
// partition (2), the session bucket (2) and the StageHash (10), all in
// Crockford base32.
const SessionIDLen = 26 + 2 + 2 + StageHashLen

// MaxPartitions is the most partitions a session ID can name.
const MaxPartitions = 32 * 32

// NewSessionID mints the ID of a session of stage, of user, joined at t, in
// partition p: a ULID whose time part is t (the Lua steps read the join time
// back from it) and whose 80 other bits come from crypto/rand, fresh for
// every ID, followed by what routes the ID with no lookup: p, UserBucket(user)
// and StageHash(stage). A session ID is a bearer capability (DESIGN, "Player
// trust"): unlike ulid's monotonic entropy, which increments within a
// millisecond, knowing one ID tells nothing about another; the routing part
// is public (anyone who knows the stage and the user can compute it), the
// 80 random bits are the secret.
func NewSessionID(t time.Time, p int, user, stage string) string {
	return newSessionID(t, p, UserBucket(user), StageHash(stage))
}

func newSessionID(t time.Time, p int, bucket, stageHash string) string {
	var id ulid.ULID
	// SetTime fails only for times after the year 10889.
	_ = id.SetTime(ulid.Timestamp(t))
	// crypto/rand.Read never fails on the platforms Go supports (it would
	// crash the program rather than return an error).
	_, _ = rand.Read(id[6:])
	var b strings.Builder
	b.Grow(SessionIDLen)
	b.WriteString(id.String())
	b.WriteByte(crockford[(p>>5)&31])
	b.WriteByte(crockford[p&31])
	b.WriteString(bucket)
	b.WriteString(stageHash)
	return b.String()
}

// SessionRef is what a session ID says of where its session lives.
type SessionRef struct {
	Partition int
	Bucket    string // UserBucket of its user
	Stage     string // StageHash of its stage
}

// ErrSessionID is returned by ParseSessionID for a string that is not a
// session ID.
var ErrSessionID = errors.New("not a session ID")

// ParseSessionID checks sid's form (SessionIDLen upper-case Crockford
// characters, a valid ULID first) and returns its routing part. It does not
// say whether the session exists: only the 80 random bits stored with it do.
func ParseSessionID(sid string) (SessionRef, error) {
	if len(sid) != SessionIDLen {
		return SessionRef{}, ErrSessionID
	}
	if _, err := ulid.ParseStrict(sid[:26]); err != nil {
		return SessionRef{}, ErrSessionID
	}
	var p int
	for i := 26; i < SessionIDLen; i++ {
		v := strings.IndexByte(crockford, sid[i])
		if v < 0 {
			return SessionRef{}, ErrSessionID
		}
		if i < 28 {
			p = p*32 + v
		}
	}
	return SessionRef{Partition: p, Bucket: sid[28:30], Stage: sid[30:]}, nil
}
