package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/viewpulse/viewpulse/internal/lease"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// TestLeaseBelongsToItsHolder: one holder at a time; only the holder renews
// or releases; a released lease is free for the next.
func TestLeaseBelongsToItsHolder(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	ctx, key := context.Background(), prefix+":lease"
	step := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: %v %v, want %v", what, got, err, want)
		}
	}
	ok, err := lease.Acquire(ctx, rdb, key, "a", time.Minute)
	step("a acquires", ok, err, true)
	ok, err = lease.Acquire(ctx, rdb, key, "b", time.Minute)
	step("b acquires a held lease", ok, err, false)
	ok, err = lease.Renew(ctx, rdb, key, "b", time.Hour)
	step("b renews a's lease", ok, err, false)
	ok, err = lease.Renew(ctx, rdb, key, "a", time.Hour)
	step("a renews", ok, err, true)
	if ttl := rdb.PTTL(ctx, key).Val(); ttl < 59*time.Minute {
		t.Fatalf("renewed lease lasts %s, want an hour", ttl)
	}
	if err := lease.Release(ctx, rdb, key, "b"); err != nil || rdb.Get(ctx, key).Val() != "a" {
		t.Fatalf("b released a's lease: %v, holder %q", err, rdb.Get(ctx, key).Val())
	}
	if err := lease.Release(ctx, rdb, key, "a"); err != nil || rdb.Exists(ctx, key).Val() != 0 {
		t.Fatalf("a's release: %v", err)
	}
	ok, err = lease.Acquire(ctx, rdb, key, "b", time.Minute)
	step("b acquires the released lease", ok, err, true)
}
