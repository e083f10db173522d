package main

import (
	"strings"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/events"
)

// TestMixIsARealisticSessionLog checks the generated events: every session
// has one join first, heartbeats, and one closing event last, with joined
// and last_seen, and one in five closes by timeout.
func TestMixIsARealisticSessionLog(t *testing.T) {
	const n = 4000 // 100 sessions
	start := time.Unix(1_760_000_000, 0)
	type seen struct{ joins, beats, closes, timeouts int }
	by := map[string]*seen{}
	counts := map[events.Type]int{}
	for i := range n {
		e := mix(i, n, start)
		if _, err := events.Decode("1-0", values(e)); err != nil {
			t.Fatalf("event %d does not decode: %v", i, err)
		}
		s := by[e.Session]
		if s == nil {
			s = &seen{}
			by[e.Session] = s
		}
		if s.closes > 0 {
			t.Fatalf("event %d of %s after its close", i, e.Session)
		}
		switch e.Type {
		case events.Join:
			s.joins++
		case events.Heartbeat:
			if s.joins == 0 {
				t.Fatalf("heartbeat of %s before its join", e.Session)
			}
			s.beats++
		case events.Timeout:
			s.timeouts++
			fallthrough
		case events.Leave:
			s.closes++
		}
		counts[e.Type]++
	}
	if len(by) != n/perSession {
		t.Fatalf("%d sessions, want %d", len(by), n/perSession)
	}
	for id, s := range by {
		if s.joins != 1 || s.closes != 1 || s.beats != perSession-2 {
			t.Fatalf("session %s: %+v", id, *s)
		}
	}
	if counts[events.Timeout] != 20 || counts[events.Leave] != 80 {
		t.Errorf("closes %v: want 80 leaves and 20 timeouts", counts)
	}
}

func values(e events.Event) map[string]any {
	v := e.Values()
	m := map[string]any{}
	for i := 0; i < len(v); i += 2 {
		m[v[i].(string)] = v[i+1]
	}
	return m
}

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6379": true, "localhost:5432": true, "[::1]:80": true, "127.0.0.1": true,
		"10.0.0.1:6379": false, "example.com:5432": false, "0.0.0.0:80": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestTableMarksTargets(t *testing.T) {
	r := &Results{
		Heartbeat: Search{Best: Step{Achieved: 6000, P99Ms: 20}}, HeartbeatCeiling: Search{Best: Step{Achieved: 10000}},
		Join: Search{Best: Step{Achieved: 3000}}, JoinCeiling: Search{Best: Step{Achieved: 10000}},
		RedisViewers: 100_000, RedisBytesPerViewer: 190,
	}
	r.compute()
	var b strings.Builder
	r.Table(&b)
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[1], "0.60x") || !strings.HasSuffix(strings.TrimSpace(lines[1]), "yes") {
		t.Errorf("heartbeat line: %q", lines[1])
	}
	if !strings.Contains(lines[2], "0.30x") || !strings.HasSuffix(strings.TrimSpace(lines[2]), "NO") {
		t.Errorf("join line: %q", lines[2])
	}
}
