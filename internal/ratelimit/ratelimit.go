// Package ratelimit keeps rate limits in Redis (GCRA, the generic cell rate
// algorithm), so that a limit holds across every process sharing that Redis.
// A client is named in Redis only by a keyed hash, never by its address or
// user ID.
//
// It imports nothing else of ViewPulse's.
package ratelimit

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rate is at most N events per Per, in any window of that length, with bursts
// up to N. The zero Rate is off: everything is allowed.
type Rate struct {
	N   int
	Per time.Duration
}

// Off reports whether r allows everything.
func (r Rate) Off() bool { return r.N <= 0 || r.Per <= 0 }

// String writes r as ParseRate reads it: "600/m", or "off".
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	if unit == "" {
		return strconv.Itoa(r.N) + "/" + r.Per.String()
	}
	return strconv.Itoa(r.N) + "/" + unit
}

// ErrRate is wrapped by every error ParseRate returns.
var ErrRate = errors.New("want N/s, N/m or N/h with N a positive integer, or off")

// ParseRate reads "N/s", "N/m", "N/h" (N from 1 to 1,000,000,000) or "off".
// Errors wrap ErrRate.
func ParseRate(s string) (Rate, error) {
	if s == "off" {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	n, err := strconv.Atoi(num)
	if !ok || per == 0 || err != nil || n < 1 || n > 1_000_000_000 {
		return Rate{}, fmt.Errorf("rate %q: %w", s, ErrRate)
	}
	return Rate{N: n, Per: per}, nil
}

// Check is one limit to apply to one client: Scope names what is limited
// ("join_ip"), ID the client within it (an address, a user ID, an API key),
// which only ever reaches Redis hashed.
type Check struct {
	Scope string
	ID    string
	Rate  Rate
}

// Result is the outcome of Allow.
type Result struct {
	// Allowed: every check allowed the event, and each was charged for it.
	Allowed bool
	// Scope is the check that refused (the one to wait longest for) and
	// RetryAfter how long until it would allow; both are zero when Allowed.
	Scope      string
	RetryAfter time.Duration
}

// Limiter applies rate limits whose state lives in Redis under
// "<prefix>:{rl}:": one key per scope and client (Key), holding the GCRA's
// theoretical arrival time and expiring by itself once the client's budget is
// full again (at most one Rate.Per after its last allowed event), plus one
// key holding the hashing salt.
type Limiter struct {
	rdb  redis.UniversalClient
	base string
	// Run, when set, runs the limit script instead of a call of its own:
	// ingest passes the stream's shared pipelines (events.Stream.RunScript),
	// so that a join's limit check shares a round trip with other requests.
	Run func(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error)

	mu   sync.Mutex
	salt []byte
}

// New returns the limiter of the deployment whose keys start with prefix
// (REDIS_PREFIX). It does not touch Redis until the first Allow.
func New(rdb redis.UniversalClient, prefix string) *Limiter {
	// {rl}: every limiter key in one cluster slot, so that one script may
	// check a join's limits together; not {0}, which would put this traffic
	// on the node that carries the stream.
	return &Limiter{rdb: rdb, base: prefix + ":{rl}:"}
}

// SaltKey holds the random salt of the client hashes, shared by every
// process of the deployment (created by the first that needs it).
func (l *Limiter) SaltKey() string { return l.base + "salt" }

// Key is the Redis key of one scope and client: "<prefix>:{rl}:<scope>:"
// followed by 32 hex digits of HMAC-SHA256(salt, id). Errors: Redis's own,
// reading or creating the salt.
func (l *Limiter) Key(ctx context.Context, scope, id string) (string, error) {
	salt, err := l.saltValue(ctx)
	if err != nil {
		return "", err
	}
	return l.key(salt, scope, id), nil
}

func (l *Limiter) key(salt []byte, scope, id string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write([]byte(id))
	return l.base + scope + ":" + hex.EncodeToString(m.Sum(nil)[:16])
}

// Allow checks every check that is not off, in one Redis step: the event is
// allowed, and charged to each, only if all allow it. Errors: Redis's own
// (the caller decides whether to fail open).
func (l *Limiter) Allow(ctx context.Context, checks ...Check) (Result, error) {
	var keys []string
	var args []any
	var scopes []string
	var salt []byte
	for _, c := range checks {
		if c.Rate.Off() {
			continue
		}
		if salt == nil {
			var err error
			if salt, err = l.saltValue(ctx); err != nil {
				return Result{}, fmt.Errorf("rate limit: %w", err)
			}
		}
		keys = append(keys, l.key(salt, c.Scope, c.ID))
		args = append(args, c.Rate.N, c.Rate.Per.Microseconds())
		scopes = append(scopes, c.Scope)
	}
	if len(keys) == 0 {
		return Result{Allowed: true}, nil
	}
	res, err := l.run(ctx, keys, args)
	if err != nil {
		return Result{}, fmt.Errorf("rate limit: %w", err)
	}
	if len(res) != 2 || res[0] < 0 || int(res[0]) > len(scopes) {
		return Result{}, fmt.Errorf("rate limit: unexpected reply %v", res)
	}
	if res[0] == 0 {
		return Result{Allowed: true}, nil
	}
	return Result{Scope: scopes[res[0]-1], RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}

// run runs the limit script, through Run when set, and reads its two
// integers.
func (l *Limiter) run(ctx context.Context, keys []string, args []any) ([]int64, error) {
	if l.Run == nil {
		return gcraScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
	}
	reply, err := l.Run(ctx, gcraScript, keys, args...)
	if err != nil {
		return nil, err
	}
	vals, _ := reply.([]any)
	out := make([]int64, len(vals))
	for i, v := range vals {
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("unexpected reply %v", reply)
		}
		out[i] = n
	}
	return out, nil
}

// saltValue returns the deployment's salt, creating it in Redis when no
// process has yet (SET NX GET: one round trip either way), and keeps it for
// the life of the limiter.
func (l *Limiter) saltValue(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.salt != nil {
		return l.salt, nil
	}
	mine := make([]byte, 32)
	_, _ = rand.Read(mine)
	val := hex.EncodeToString(mine)
	old, err := l.rdb.SetArgs(ctx, l.SaltKey(), val, redis.SetArgs{Mode: "NX", Get: true}).Result()
	switch {
	case err == nil:
		val = old // another process made it first
	case !errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("salt: %w", err)
	}
	l.salt = []byte(val)
	return l.salt, nil
}

// gcraScript: KEYS = one key per limit, ARGV = for each, the events allowed
// per period and the period in µs; the burst is the whole period's events.
// Each key holds the limit's theoretical arrival time (TAT, µs of Redis's
// clock). An event is allowed by a limit when TAT + interval <= now + period
// (interval = period / N); only when every limit allows it are all TATs
// advanced, each key expiring when its TAT passes. Returns {0, 0} when
// allowed, else {index of the refusing limit with the longest wait (1-based),
// that wait in µs}. The shape is that of github.com/go-redis/redis_rate's
// GCRA (itself from rwz/redis-gcra), for several keys and in integer µs.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local refused, wait = 0, 0
for i = 1, #KEYS do
  local n, period = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = math.ceil(tat + period / n)
  local allow_at = new_tat - period
  if allow_at > now and allow_at - now > wait then
    refused, wait = i, allow_at - now
  end
  tats[i] = new_tat
end
if refused > 0 then return {refused, math.ceil(wait)} end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.max(1, math.ceil((tats[i] - now) / 1000)))
end
return {0, 0}
`)
