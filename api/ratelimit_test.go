package api_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/ops"
	"github.com/viewpulse/viewpulse/internal/ratelimit"
	"github.com/viewpulse/viewpulse/internal/testutil"
)

// newLimitedHarness is a harness whose joins are limited by limits (state in
// the harness's Redis), with a metrics registry and 127.0.0.1 as a trusted
// proxy, so that X-Forwarded-For picks the client address.
func newLimitedHarness(t *testing.T, limits api.RateLimits, mutate ...func(*api.Config)) (*harness, *prometheus.Registry) {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	reg := ops.NewRegistry()
	if limits.Limiter == nil {
		limits.Limiter = ratelimit.New(rdb, prefix)
	}
	h := newHarnessOn(t, rdb, prefix, append([]func(*api.Config){func(c *api.Config) {
		c.Limits, c.Registry = limits, reg
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}}, mutate...)...)
	return h, reg
}

func (h *harness) joinFrom(ip, user string) answer {
	h.t.Helper()
	return h.do(http.MethodPost, "/v1/viewers/join", "application/json",
		`{"stage_arn":"`+stage+`","user_id":"`+user+`"}`, "X-Forwarded-For", ip)
}

// checkLimited fails unless a is 429 rate_limited with a whole Retry-After
// of at least 1 and at most max seconds.
func checkLimited(t *testing.T, a answer, max int) {
	t.Helper()
	retry, err := strconv.Atoi(a.header.Get("Retry-After"))
	if a.status != http.StatusTooManyRequests || a.code() != "rate_limited" || err != nil || retry < 1 || retry > max {
		t.Fatalf("want 429 rate_limited with Retry-After in [1, %d]; got %d %v Retry-After %q",
			max, a.status, a.body, a.header.Get("Retry-After"))
	}
}

// TestJoinRatePerUser: JOIN_RATE_PER_USER stops one user's rejoin flood;
// refused joins append nothing; other users and bad input are unaffected
// (validation answers first).
func TestJoinRatePerUser(t *testing.T) {
	h, reg := newLimitedHarness(t, api.RateLimits{JoinPerUser: ratelimit.Rate{N: 3, Per: time.Minute}})
	for i := range 3 {
		if a := h.joinFrom("203.0.113.1", "mallory"); a.status != 200 {
			t.Fatalf("join %d: %d %v", i, a.status, a.body)
		}
	}
	before := h.streamLen()
	for range 2 {
		checkLimited(t, h.joinFrom("203.0.113.2", "mallory"), 20) // one join per 20 s
	}
	if n := h.streamLen(); n != before {
		t.Fatalf("refused joins appended %d entries", n-before)
	}
	if a := h.joinFrom("203.0.113.1", "alice"); a.status != 200 {
		t.Fatalf("another user: %d %v", a.status, a.body)
	}
	a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", `{"stage_arn":"nope","user_id":"mallory"}`)
	if a.status != 400 || a.code() != "invalid_stage_arn" {
		t.Fatalf("bad input of a limited user: %d %v, want 400 first", a.status, a.body)
	}
	if got := testutil.Metric(t, reg, "viewpulse_ratelimit_rejected_total", "scope", "join_user"); got != 2 {
		t.Fatalf("rejected{join_user} = %v, want 2", got)
	}
}

// TestJoinRatePerIP: JOIN_RATE counts joins per client address, whatever the
// user.
func TestJoinRatePerIP(t *testing.T) {
	h, reg := newLimitedHarness(t, api.RateLimits{
		JoinPerIP: ratelimit.Rate{N: 2, Per: time.Minute}, JoinPerUser: ratelimit.Rate{N: 20, Per: time.Minute}})
	for _, u := range []string{"u1", "u2"} {
		if a := h.joinFrom("198.51.100.7", u); a.status != 200 {
			t.Fatalf("%s: %d %v", u, a.status, a.body)
		}
	}
	checkLimited(t, h.joinFrom("198.51.100.7", "u3"), 30)
	if a := h.joinFrom("198.51.100.8", "u3"); a.status != 200 {
		t.Fatalf("another address: %d %v", a.status, a.body)
	}
	if got := testutil.Metric(t, reg, "viewpulse_ratelimit_rejected_total", "scope", "join_ip"); got != 1 {
		t.Fatalf("rejected{join_ip} = %v, want 1", got)
	}
}

// TestJoinRateOff: off limits refuse nothing and never ask Redis.
func TestJoinRateOff(t *testing.T) {
	h, _ := newLimitedHarness(t, api.RateLimits{})
	for i := range 40 {
		if a := h.joinFrom("192.0.2.1", "same-user"); a.status != 200 {
			t.Fatalf("join %d: %d %v", i, a.status, a.body)
		}
	}
	if n, err := h.rdb.Exists(t.Context(), ratelimit.New(h.rdb, h.stream.Prefix()).SaltKey()).Result(); err != nil || n != 0 {
		t.Fatalf("the limiter touched Redis with every limit off (salt exists: %d, %v)", n, err)
	}
}

// TestLimiterFailsOpen: with the limiter's Redis unreachable (a stopped
// proxy) and the stream's up, joins are allowed and each failure counted.
func TestLimiterFailsOpen(t *testing.T) {
	proxy, url := testutil.ProxyURL(t, testutil.RedisURL(t))
	proxy.Stop()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries = -1
	dead := redis.NewClient(opt)
	t.Cleanup(func() { dead.Close() })
	h, reg := newLimitedHarness(t, api.RateLimits{Limiter: ratelimit.New(dead, "vp"),
		JoinPerIP: ratelimit.Rate{N: 1, Per: time.Hour}, JoinPerUser: ratelimit.Rate{N: 1, Per: time.Hour}})
	for i := range 3 {
		if a := h.joinFrom("192.0.2.9", "u"); a.status != 200 {
			t.Fatalf("join %d with the limiter down: %d %v", i, a.status, a.body)
		}
	}
	if got := testutil.Metric(t, reg, "viewpulse_ratelimit_errors_total"); got != 3 {
		t.Fatalf("ratelimit errors = %v, want 3", got)
	}
}

// With viewer tokens on, an address is charged before its token's signature
// is checked: a flood of forged tokens from one address costs one verify per
// allowed join, then 429s that verify nothing.
func TestForgedTokensAreLimitedBeforeVerifying(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, reg := newLimitedHarness(t, api.RateLimits{JoinPerIP: ratelimit.Rate{N: 3, Per: time.Minute}},
		func(c *api.Config) { c.Tokens = api.TokenConfig{Required: true, SigningKey: key} })
	forged := `{"token":"eyJhbGciOiJFZERTQSJ9.eyJyZXNvdXJjZSI6ImEifQ.c2lnbmF0dXJl"}`
	var codes []string
	for range 6 {
		a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", forged, "X-Forwarded-For", "198.51.100.9")
		codes = append(codes, a.code())
	}
	want := []string{"invalid_token", "invalid_token", "invalid_token", "rate_limited", "rate_limited", "rate_limited"}
	if !slices.Equal(codes, want) {
		t.Fatalf("answers %v, want %v", codes, want)
	}
	if n := testutil.Metric(t, reg, "viewpulse_token_rejected_total", "reason", "invalid"); n != 3 {
		t.Fatalf("%v tokens verified and refused, want 3", n)
	}
}
