package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/internal/ratelimit"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

func TestParseRate(t *testing.T) {
	good := map[string]ratelimit.Rate{
		"off": {}, "600/m": {N: 600, Per: time.Minute}, "1/s": {N: 1, Per: time.Second}, "20/h": {N: 20, Per: time.Hour},
	}
	for in, want := range good {
		got, err := ratelimit.ParseRate(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseRate(%q) = %v (%s), %v; want %v", in, got, got, err, want)
		}
	}
	for _, in := range []string{"", "600", "600/d", "0/m", "-1/s", "x/m", "10/min", "600 /m", "1e3/s", "OFF"} {
		if _, err := ratelimit.ParseRate(in); !errors.Is(err, ratelimit.ErrRate) {
			t.Errorf("ParseRate(%q) err = %v, want ErrRate", in, err)
		}
	}
}

// TestAllowAllOrNothing: two limits in one step; an event is allowed only
// when both allow it, and a refusal charges neither.
func TestAllowAllOrNothing(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	l := ratelimit.New(rdb, prefix)
	ctx := context.Background()
	wide := ratelimit.Check{Scope: "join_ip", ID: "203.0.113.7", Rate: ratelimit.Rate{N: 5, Per: time.Minute}}
	narrow := func(user string) ratelimit.Check {
		return ratelimit.Check{Scope: "join_user", ID: user, Rate: ratelimit.Rate{N: 2, Per: time.Minute}}
	}
	allowed := 0
	for i := range 4 { // alice x4: 2 allowed, 2 refused by join_user
		res, err := l.Allow(ctx, wide, narrow("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
			continue
		}
		if i < 2 || res.Scope != "join_user" || res.RetryAfter <= 0 || res.RetryAfter > 30*time.Second {
			t.Fatalf("event %d: %+v, want join_user to refuse from the third on, retry within 30s", i, res)
		}
	}
	// The two refusals did not charge the IP: 3 more users fill its 5.
	for _, u := range []string{"bob", "carol", "dave"} {
		if res, err := l.Allow(ctx, wide, narrow(u)); err != nil || !res.Allowed {
			t.Fatalf("%s: %+v %v", u, res, err)
		}
	}
	res, err := l.Allow(ctx, wide, narrow("erin"))
	if err != nil || res.Allowed || res.Scope != "join_ip" {
		t.Fatalf("sixth on the IP: %+v %v, want refused by join_ip", res, err)
	}
	// 5 per minute: one event every 12 s, so the wait is at most 12 s.
	if res.RetryAfter <= 0 || res.RetryAfter > 12*time.Second {
		t.Fatalf("retry after %s, want (0, 12s]", res.RetryAfter)
	}
	if allowed != 2 {
		t.Fatalf("alice allowed %d times, want 2", allowed)
	}
	// Off checks are skipped; nothing at all is allowed without Redis.
	if res, err := l.Allow(ctx, ratelimit.Check{Scope: "join_ip", ID: "203.0.113.7"}); err != nil || !res.Allowed {
		t.Fatalf("an off check: %+v %v", res, err)
	}
}

// TestKeysHideClientsAndExpire: limiter keys start with the prefix, carry
// {rl}, hold no raw ID, and expire within one period.
func TestKeysHideClientsAndExpire(t *testing.T) {
	rdb, prefix := testutil.Redis(t)
	l := ratelimit.New(rdb, prefix)
	ctx := context.Background()
	const ip = "198.51.100.23"
	if _, err := l.Allow(ctx, ratelimit.Check{Scope: "join_ip", ID: ip, Rate: ratelimit.Rate{N: 3, Per: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	key, err := l.Key(ctx, "join_ip", ip)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, prefix+":{rl}:join_ip:") || strings.Contains(key, ip) {
		t.Fatalf("key %q", key)
	}
	ttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL %s = %s %v, want (0, 1m]", key, ttl, err)
	}
	// Nothing under the prefix names the address, and every key but the
	// salt expires.
	iter := rdb.Scan(ctx, 0, prefix+":*", 100).Iterator() // test inspection only
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.Contains(k, ip) {
			t.Fatalf("key %q names the address", k)
		}
		if v, _ := rdb.Get(ctx, k).Result(); strings.Contains(v, ip) {
			t.Fatalf("key %q holds the address", k)
		}
		if k != l.SaltKey() {
			if ttl, _ := rdb.PTTL(ctx, k).Result(); ttl <= 0 {
				t.Fatalf("key %q has no TTL", k)
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	// A second limiter (another process) shares the salt, so the same key.
	other, err := ratelimit.New(rdb, prefix).Key(ctx, "join_ip", ip)
	if err != nil || other != key {
		t.Fatalf("another process's key %q, %v; want %q", other, err, key)
	}
}

// TestAllowWithoutRedisFails: an unreachable Redis is an error (callers fail
// open), within the caller's deadline.
func TestAllowWithoutRedisFails(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := ratelimit.New(rdb, "x").Allow(ctx, ratelimit.Check{Scope: "join_ip", ID: "a", Rate: ratelimit.Rate{N: 1, Per: time.Second}})
	if err == nil {
		t.Fatal("Allow against a closed port succeeded")
	}
}
