package events

import (
	"errors"
	"testing"
)

// FuzzDecode: any fields decode to an event or to an ErrDecode error, never a
// panic; whatever decodes survives a round trip through Values.
func FuzzDecode(f *testing.F) {
	f.Add("1", "join", "01K0000000000000000000000", "u", "arn:aws:ivs:us-east-1:1:stage/x", "1760000000000", "", "")
	f.Add("1", "leave", "s", "u|x", "st", "1760000000000", "1759999999000", "1760000000000")
	f.Add("", "timeout", "s", "u", "st", "1", "1", "1")
	f.Add("2", "heartbeat", "s", "u", "st", "99999999999999999999", "", "")
	f.Fuzz(func(t *testing.T, v, typ, session, user, stage, at, joined, lastSeen string) {
		in := map[string]any{"v": v, "type": typ, "session": session, "user": user, "stage": stage,
			"at": at, "joined": joined, "last_seen": lastSeen}
		e, err := Decode("1-0", in)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error does not wrap ErrDecode: %v", err)
			}
			return
		}
		vals := e.Values()
		m := map[string]any{}
		for i := 0; i < len(vals); i += 2 {
			m[vals[i].(string)] = vals[i+1]
		}
		again, err := Decode("1-0", m)
		if err != nil || again != e {
			t.Fatalf("round trip: %+v -> %+v, %v", e, again, err)
		}
	})
}
