package projector

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/viewpulse/viewpulse/internal/testutil"
)

func TestReplayEqualsLiveProjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.workload(21, 1200)
	r := rand.New(rand.NewPCG(21, 21))
	e.stepUntilDrained(r, e.projector("a", e.db, nil), e.projector("b", e.db, nil))

	into := openDB(t, testutil.Schema(t))
	rep, err := Replay(ctx, e.rdb, e.keys, into, 97)
	if err != nil {
		t.Fatal(err)
	}
	n := e.rdb.XLen(ctx, e.keys.Stream()).Val()
	if rep.Entries != int(n) || rep.Applied != int(n) || rep.Skipped != 0 || rep.Truncated {
		t.Fatalf("report %+v for %d entries", rep, n)
	}
	cmp, err := Compare(ctx, e.db, into)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal() || cmp.Sessions.Live == 0 || cmp.Users.Live == 0 {
		t.Fatalf("comparison %+v", cmp)
	}

	// A replay into a database that holds rows is refused.
	if _, err := Replay(ctx, e.rdb, e.keys, into, 0); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("second replay: %v", err)
	}

	// Alter one row, drop another and add a third: each is reported.
	for _, q := range []string{
		`UPDATE viewer_sessions SET last_seen_at = last_seen_at + interval '1 ms'
		 WHERE session_id = (SELECT min(session_id) FROM viewer_sessions)`,
		`DELETE FROM viewer_sessions WHERE session_id = (SELECT max(session_id) FROM viewer_sessions)`,
		`INSERT INTO users (user_id, created_at) VALUES ('zz-extra', now())`,
	} {
		if _, err := into.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	cmp, err = Compare(ctx, e.db, into)
	if err != nil {
		t.Fatal(err)
	}
	s, u := cmp.Sessions, cmp.Users
	if cmp.Equal() || s.Different != 1 || s.OnlyLive != 1 || s.OnlyReplayed != 0 || u.OnlyReplayed != 1 ||
		u.Different != 0 || len(s.Examples) != 2 || u.Examples[0] != "zz-extra" {
		t.Fatalf("comparison after changes %+v", cmp)
	}
}
