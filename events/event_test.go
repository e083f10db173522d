package events

import (
	"errors"
	"testing"
	"time"
)

func TestValuesDecodeRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_760_000_000_123).UTC()
	in := Event{Type: Leave, Session: "s", User: "u", Stage: "st", Participant: "p", At: at, Joined: at.Add(-time.Minute), LastSeen: at}
	vals := in.Values()
	m := map[string]any{}
	for i := 0; i < len(vals); i += 2 {
		m[vals[i].(string)] = vals[i+1]
	}
	out, err := Decode("1-0", m)
	if err != nil {
		t.Fatal(err)
	}
	in.ID, in.Version = "1-0", 1
	if out != in {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestDecodeRejects(t *testing.T) {
	ok := map[string]any{"v": "1", "type": "heartbeat", "session": "s", "user": "u", "stage": "st", "at": "1"}
	cases := map[string]func(m map[string]any){
		"future version": func(m map[string]any) { m["v"] = "2" },
		"bad version":    func(m map[string]any) { m["v"] = "x" },
		"unknown type":   func(m map[string]any) { m["type"] = "jump" },
		"no session":     func(m map[string]any) { delete(m, "session") },
		"no at":          func(m map[string]any) { delete(m, "at") },
		"bad at":         func(m map[string]any) { m["at"] = "-5" },
		"leave no joined": func(m map[string]any) {
			m["type"] = "leave"
			m["last_seen"] = "1"
		},
	}
	for name, mutate := range cases {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		mutate(m)
		if _, err := Decode("1-0", m); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	delete(ok, "v") // entries from before versioning decode as v1
	if e, err := Decode("1-0", ok); err != nil || e.Version != 1 {
		t.Fatalf("no v: %+v, %v", e, err)
	}
}
