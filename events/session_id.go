package events

import (
	"crypto/rand"
	"time"

	"github.com/oklog/ulid/v2"
)

// NewSessionID mints a session ID for a join at t: a ULID whose time part is
// t (the Lua steps read the join time back from it) and whose 80 other bits
// come from crypto/rand, fresh for every ID. A session ID is a bearer
// capability (DESIGN, "Player trust"): unlike ulid's monotonic entropy, which
// increments within a millisecond, knowing one ID tells nothing about
// another. The last two characters, which pick the session bucket
// (Keys.Sessions), are random too.
func NewSessionID(t time.Time) string {
	var id ulid.ULID
	// SetTime fails only for times after the year 10889.
	_ = id.SetTime(ulid.Timestamp(t))
	// crypto/rand.Read never fails on the platforms Go supports (it would
	// crash the program rather than return an error).
	_, _ = rand.Read(id[6:])
	return id.String()
}
