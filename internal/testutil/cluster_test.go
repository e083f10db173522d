package testutil

import (
	"context"
	"slices"
	"testing"
)

// A moved empty slot is served by its new master: a client that knew the
// old layout follows the redirection, a new one routes there.
func TestMoveSlot(t *testing.T) {
	c := StartRedisCluster(t, 3)
	ctx := context.Background()
	rdb := c.Client(t)
	const key = "{p11}:events"
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	from, err := c.SlotOwner(ctx, int(slot))
	if err != nil {
		t.Fatal(err)
	}
	to := (from + 1) % len(c.Nodes)
	if err := c.MoveSlot(ctx, int(slot), to); err != nil {
		t.Fatal(err)
	}
	if got, err := c.SlotOwner(ctx, int(slot)); err != nil || got != to {
		t.Fatalf("slot %d on node %d (%v), want %d", slot, got, err, to)
	}
	if err := rdb.Set(ctx, key, "x", 0).Err(); err != nil {
		t.Fatalf("set after the move: %v", err)
	}
	m, err := c.Client(t).MasterForKey(ctx, key) // a client started after the move

	if err != nil || slices.Index(c.Addrs(), m.Options().Addr) != to {
		t.Fatalf("the client routes %s to %v (%v), want node %d", key, m, err, to)
	}
	if err := c.MoveSlot(ctx, int(slot), from); err == nil {
		t.Fatal("a slot holding a key was moved")
	}
}
