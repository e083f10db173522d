package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// ErrPartitionsChanged is returned by CheckPartitions when the deployment
// was created with another number of partitions.
var ErrPartitionsChanged = errors.New("PARTITIONS differs from the deployment's")

// CheckPartitions records n as the deployment's number of partitions at its
// first start (in Keys.Meta of partition 0) and refuses another n later: a
// stage's partition, and so every key of its live state and the session IDs
// handed out, depend on it. It also returns whether keys of the layout before
// partitions (one hash tag {0}) are still there, for the caller to warn.
//
// Changing the number of partitions of a live deployment is not done in
// place: start the new layout under a new REDIS_PREFIX beside the old one,
// switch ingest to it, let the old projectors and snapshotter drain the old
// prefix (its sessions time out), then retire it (README, "Scaling").
func CheckPartitions(ctx context.Context, rdb redis.UniversalClient, prefix string, n int) (oldLayout bool, err error) {
	if n < 1 || n > MaxPartitions {
		return false, fmt.Errorf("PARTITIONS=%d: want 1 to %d", n, MaxPartitions)
	}
	meta := NewKeys(prefix).Meta()
	if err := rdb.HSetNX(ctx, meta, "partitions", n).Err(); err != nil {
		return false, fmt.Errorf("record partitions: %w", err)
	}
	got, err := rdb.HGet(ctx, meta, "partitions").Result()
	if err != nil {
		return false, fmt.Errorf("read partitions: %w", err)
	}
	if have, _ := strconv.Atoi(got); have != n {
		return false, fmt.Errorf("%w: PARTITIONS=%d but the deployment under prefix %q was created with %s; "+
			"to change it, start the new number under a new REDIS_PREFIX and drain the old one (README, \"Scaling\")",
			ErrPartitionsChanged, n, prefix, got)
	}
	old, err := rdb.Exists(ctx, prefix+":{0}:events").Result()
	if err != nil {
		return false, fmt.Errorf("look for the old layout: %w", err)
	}
	return old > 0, nil
}
