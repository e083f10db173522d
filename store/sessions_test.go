package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sourcegraph/conc/pool"
	"github.com/viewpulse/viewpulse/internal/testutil"
	"github.com/viewpulse/viewpulse/store"
)

const stage = "arn:aws:ivs:us-east-1:123456789012:stage/abcDEF123"

func at(ms int64) time.Time { return time.UnixMilli(1_760_000_000_000 + ms).UTC() }

// lifecycle returns the deltas of one session's join, heartbeat, rejoin and
// leave, and the row they make.
func lifecycle(id string) ([]store.SessionDelta, store.Session) {
	base := store.SessionDelta{SessionID: id, UserID: "u-" + id, StageARN: stage}
	join, hb, rejoin, leave := base, base, base, base
	join.ParticipantID, join.JoinedAt, join.LastSeenAt, join.FirstSeenAt = "p1", at(0), at(0), at(0)
	join.UserAgent, join.IPAddress, join.CountryCode = "Mozilla/5.0", "203.0.113.9", "DE"
	hb.LastSeenAt, hb.FirstSeenAt = at(30_000), at(30_000)
	rejoin.JoinedAt, rejoin.LastSeenAt, rejoin.FirstSeenAt = at(40_000), at(40_000), at(40_000)
	leave.ParticipantID, leave.JoinedAt, leave.LastSeenAt, leave.LeftAt = "p1", at(0), at(65_500), at(65_500)
	leave.EndReason, leave.FirstSeenAt = "leave", at(0)
	want := store.Session{
		SessionID: id, UserID: "u-" + id, StageARN: stage, ParticipantID: "p1",
		JoinedAt: at(0), LastSeenAt: at(65_500), LeftAt: at(65_500), EndReason: "leave",
		WatchDurationSeconds: sql.NullInt32{Int32: 65, Valid: true},
		UserAgent:            "Mozilla/5.0", IPAddress: "203.0.113.9", CountryCode: "DE",
	}
	return []store.SessionDelta{join, hb, rejoin, leave}, want
}

func sessions(t testing.TB, db *store.DB) map[string]store.Session {
	t.Helper()
	out := map[string]store.Session{}
	after := ""
	for {
		page, err := db.SessionsAfter(context.Background(), after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		for _, s := range page {
			out[s.SessionID] = s
		}
		after = page[len(page)-1].SessionID
	}
}

func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func TestApplyBatchIsOrderFreeAndRepeatSafe(t *testing.T) {
	t.Parallel()
	db := NewDB(t)
	ctx := context.Background()
	want := map[string]store.Session{}
	for i, perm := range permutations(4) {
		id := fmt.Sprintf("s%02d", i)
		deltas, row := lifecycle(id)
		want[id] = row
		for _, j := range append(perm, perm[0], perm[2]) { // every order, some twice
			if err := db.ApplyBatch(ctx, []store.SessionDelta{deltas[j]}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := sessions(t, db)
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s:\n got %+v\nwant %+v", id, got[id], w)
		}
	}
	users, err := db.UsersAfter(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != len(want) || users[0].CreatedAt != at(0) {
		t.Fatalf("users = %+v", users)
	}
}

func TestApplyBatchHeartbeatBeforeJoinLeavesJoinedNull(t *testing.T) {
	t.Parallel()
	db := NewDB(t)
	hb := store.SessionDelta{SessionID: "s", UserID: "u", StageARN: stage, LastSeenAt: at(5)}
	if err := db.ApplyBatch(context.Background(), []store.SessionDelta{hb}); err != nil {
		t.Fatal(err)
	}
	got := sessions(t, db)["s"]
	want := store.Session{SessionID: "s", UserID: "u", StageARN: stage, LastSeenAt: at(5)}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestApplyBatchDuplicateSessionsInOneBatch(t *testing.T) {
	t.Parallel()
	db := NewDB(t)
	deltas, want := lifecycle("dup")
	batch := append(append([]store.SessionDelta{}, deltas[3], deltas[1], deltas[0]), deltas...)
	if err := db.ApplyBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if got := sessions(t, db)["dup"]; got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestConcurrentOverlappingBatches(t *testing.T) {
	t.Parallel()
	db := NewDB(t)
	var all []store.SessionDelta
	want := map[string]store.Session{}
	for i := range 300 {
		deltas, row := lifecycle(fmt.Sprintf("c%03d", i))
		all = append(all, deltas...)
		want[row.SessionID] = row
	}
	p := pool.New().WithErrors().WithContext(context.Background())
	for g := range 4 {
		r := rand.New(rand.NewPCG(uint64(g), 7))
		p.Go(func(ctx context.Context) error {
			for range 15 {
				batch := make([]store.SessionDelta, 0, 400)
				for range 400 {
					batch = append(batch, all[r.IntN(len(all))])
				}
				if err := db.ApplyBatch(ctx, batch); err != nil {
					return err
				}
			}
			// Finally everything, in a shuffled order, so every row is complete.
			batch := append([]store.SessionDelta{}, all...)
			r.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			return db.ApplyBatch(ctx, batch)
		})
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	got := sessions(t, db)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("%s:\n got %+v\nwant %+v", id, got[id], w)
		}
	}
}

func TestApplyBatchRefusedDataIsAPgError(t *testing.T) {
	t.Parallel()
	db := NewDB(t)
	bad := store.SessionDelta{SessionID: "s", UserID: "u", StageARN: stage, LastSeenAt: at(1), CountryCode: "germany"}
	err := db.ApplyBatch(context.Background(), []store.SessionDelta{bad})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("err = %v, want a check violation", err)
	}
	if n := len(sessions(t, db)); n != 0 {
		t.Fatalf("%d rows after a refused batch", n)
	}
}

// BenchmarkApplyBatch merges batches of 1000 sessions, a quarter of them new,
// the rest heartbeats of known sessions.
func BenchmarkApplyBatch(b *testing.B) {
	db, err := store.Open(context.Background(), testutil.Schema(b), store.Options{Migrate: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	ctx := context.Background()
	next := 0
	b.ResetTimer()
	for i := range b.N {
		batch := make([]store.SessionDelta, 1000)
		for j := range batch {
			id := fmt.Sprintf("b%09d", next-j*3)
			if j%4 == 0 || next-j*3 < 0 {
				id = fmt.Sprintf("b%09d", next)
				next++
			}
			batch[j] = store.SessionDelta{SessionID: id, UserID: "u" + id[len(id)-3:], StageARN: stage,
				LastSeenAt: at(int64(i)), FirstSeenAt: at(int64(i))}
		}
		if err := db.ApplyBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
}
