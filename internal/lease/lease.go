// Package lease is a named holder's claim on a Redis key for a while: taken
// with SET NX PX, renewed and given back only by its holder (each by a
// script that checks the holder, atomically). The projector's partition
// leases and the webhook stage watcher's lease are such leases.
package lease

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Acquire takes key for holder for ttl if nobody holds it, and reports
// whether it did.
func Acquire(ctx context.Context, rdb redis.UniversalClient, key, holder string, ttl time.Duration) (bool, error) {
	return rdb.SetNX(ctx, key, holder, ttl).Result()
}

// Renew extends key's lease to ttl from now if holder holds it, and
// reports whether it did (false: taken by another or expired).
func Renew(ctx context.Context, rdb redis.UniversalClient, key, holder string, ttl time.Duration) (bool, error) {
	return renewScript.Run(ctx, rdb, []string{key}, holder, ttl.Milliseconds()).Bool()
}

// Release gives key back if holder holds it (repeat-safe).
func Release(ctx context.Context, rdb redis.UniversalClient, key, holder string) error {
	return releaseScript.Run(ctx, rdb, []string{key}, holder).Err()
}

// renewScript extends KEYS[1]'s lease by ARGV[2] ms if ARGV[1] holds it.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes KEYS[1]'s lease if ARGV[1] holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
