package projector

import (
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/store"
)

// Fold turns a batch of events into one row change per session, ordered by
// session ID, ready for store.ApplyBatch. Heartbeats collapse to the latest
// one; the order of evs does not matter.
func Fold(evs []events.Event) []store.SessionDelta {
	ds := make([]store.SessionDelta, len(evs))
	for i, e := range evs {
		ds[i] = Delta(e)
	}
	return store.CoalesceDeltas(ds)
}

// Delta is what one event says about its session's row: a join's at is the
// join time and its user agent is classified (ParseUserAgent); a heartbeat only moves last_seen_at; a leave or timeout carries
// joined and last_seen and closes the row at last_seen, so it stands on its
// own when it is projected before its join.
func Delta(e events.Event) store.SessionDelta {
	d := store.SessionDelta{
		SessionID:     e.Session,
		UserID:        e.User,
		StageARN:      e.Stage,
		ParticipantID: e.Participant,
		LastSeenAt:    e.At,
		FirstSeenAt:   e.At,
	}
	switch e.Type {
	case events.Join:
		d.JoinedAt = e.At
		d.UserAgent, d.IPAddress, d.CountryCode = e.UA, e.IP, e.Country
		c := ParseUserAgent(e.UA)
		d.DeviceType, d.OS, d.Browser = c.DeviceType, c.OS, c.Browser
	case events.Leave, events.Timeout:
		d.JoinedAt = e.Joined
		d.LastSeenAt = e.LastSeen
		d.LeftAt = e.LastSeen
		d.EndReason = string(e.Type)
		if e.Joined.Before(d.FirstSeenAt) {
			d.FirstSeenAt = e.Joined
		}
	}
	return d
}
