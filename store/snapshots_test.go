package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/store"
)

func TestInsertSnapshotsWritesEachStageAndTimeOnce(t *testing.T) {
	t.Parallel()
	db := NewDB(t)
	ctx := context.Background()
	const a, b = "arn:aws:ivs:us-east-1:1:stage/a", "arn:aws:ivs:us-east-1:1:stage/b"
	t0 := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	first := []store.Snapshot{
		{Stage: a, Time: t0, Viewers: 3, Peak: 5},
		{Stage: b, Time: t0, Viewers: 0, Peak: 1},
	}
	if n, err := db.InsertSnapshots(ctx, first); err != nil || n != 2 {
		t.Fatalf("first insert = %d, %v", n, err)
	}
	// A late snapshotter's rows for the same boundary lose; new ones land.
	second := []store.Snapshot{
		{Stage: a, Time: t0, Viewers: 9, Peak: 9},
		{Stage: a, Time: t0.Add(5 * time.Minute), Viewers: 2, Peak: 3},
	}
	if n, err := db.InsertSnapshots(ctx, second); err != nil || n != 1 {
		t.Fatalf("second insert = %d, %v", n, err)
	}
	if n, err := db.InsertSnapshots(ctx, nil); err != nil || n != 0 {
		t.Fatalf("empty insert = %d, %v", n, err)
	}

	rows, err := db.Snapshots(ctx, a, t0, t0.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Snapshot{first[0], second[1]}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("rows = %+v, want %+v", rows, want)
	}
	if rows, _ := db.Snapshots(ctx, a, t0, t0.Add(5*time.Minute)); len(rows) != 1 {
		t.Fatalf("to is exclusive: rows = %+v", rows)
	}

	latest, err := db.LatestSnapshots(ctx, []string{a, b, "arn:aws:ivs:us-east-1:1:stage/none"}, t0, t0.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 2 || latest[a] != second[1] || latest[b] != first[1] {
		t.Fatalf("latest = %+v", latest)
	}
}
