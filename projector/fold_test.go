package projector

import (
	"fmt"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/store"
)

const stage = "arn:aws:ivs:us-east-1:123456789012:stage/abcDEF123"

func at(ms int64) time.Time { return time.UnixMilli(1_760_000_000_000 + ms).UTC() }

func TestFold(t *testing.T) {
	ev := func(typ events.Type, session string, ms int64) events.Event {
		return events.Event{Type: typ, Session: session, User: "u-" + session, Stage: stage, At: at(ms)}
	}
	join := ev(events.Join, "a", 0)
	join.Participant, join.UA, join.IP, join.Country = "p", "ua", "198.51.100.7", "FR"
	rejoin := ev(events.Join, "a", 50)
	leave := ev(events.Timeout, "a", 900)
	leave.Participant, leave.Joined, leave.LastSeen = "p", at(0), at(70)
	closeOnly := ev(events.Leave, "b", 400)
	closeOnly.Joined, closeOnly.LastSeen = at(-100), at(400)
	batch := []events.Event{
		ev(events.Heartbeat, "c", 30), leave, ev(events.Heartbeat, "a", 60), closeOnly,
		ev(events.Heartbeat, "c", 90), join, ev(events.Heartbeat, "a", 70), rejoin,
		ev(events.Heartbeat, "c", 10), join, // a duplicate
	}
	got := Fold(batch)
	want := []store.SessionDelta{
		{SessionID: "a", UserID: "u-a", StageARN: stage, ParticipantID: "p", JoinedAt: at(0), LastSeenAt: at(70),
			LeftAt: at(70), EndReason: "timeout", UserAgent: "ua", IPAddress: "198.51.100.7", CountryCode: "FR", DeviceType: "other", FirstSeenAt: at(0)},
		{SessionID: "b", UserID: "u-b", StageARN: stage, JoinedAt: at(-100), LastSeenAt: at(400), LeftAt: at(400),
			EndReason: "leave", FirstSeenAt: at(-100)},
		{SessionID: "c", UserID: "u-c", StageARN: stage, LastSeenAt: at(90), FirstSeenAt: at(10)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d deltas: %+v", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("delta %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// BenchmarkFold folds batches of 1000 realistic events: 90% heartbeats
// across 200 sessions, the rest joins and leaves.
func BenchmarkFold(b *testing.B) {
	batch := make([]events.Event, 1000)
	for i := range batch {
		s := fmt.Sprintf("01JSESSION%016d", i%200)
		e := events.Event{Type: events.Heartbeat, Session: s, User: "user-" + s[20:], Stage: stage, At: at(int64(i))}
		switch i % 20 {
		case 0:
			e.Type, e.UA, e.IP, e.Country, e.Participant = events.Join, benchUA, "203.0.113.9", "DE", "p"
		case 1:
			e.Type, e.Joined, e.LastSeen = events.Leave, at(0), at(int64(i))
		}
		batch[i] = e
	}
	b.ReportAllocs()
	for b.Loop() {
		Fold(batch)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

// benchUA is a real user agent, so that BenchmarkFold counts its parse.
const benchUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
