package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/viewpulse/viewpulse/internal/ratelimit"
)

// RateLimits are the limits kept in Redis so that they hold across every
// ingest process of a deployment (DESIGN, "Player trust"). An off Rate (the
// zero value) does not limit; a nil Limiter turns every limit off.
type RateLimits struct {
	Limiter *ratelimit.Limiter
	// JoinPerIP limits joins per client address (JOIN_RATE).
	JoinPerIP ratelimit.Rate
	// JoinPerUser limits joins per user ID (JOIN_RATE_PER_USER): also
	// rejoin floods of one user.
	JoinPerUser ratelimit.Rate
	// TokenPerKey limits the routes behind limitByAPIKey per bearer key
	// (TOKEN_RATE).
	TokenPerKey ratelimit.Rate
}

// The scopes of viewpulse_ratelimit_rejected_total.
const (
	scopeJoinIP   = "join_ip"
	scopeJoinUser = "join_user"
	scopeToken    = "token"
)

// joinIPCheck and joinUserCheck are the join limits (JOIN_RATE,
// JOIN_RATE_PER_USER) of a client address and a user; s.limit applies them,
// several in one Redis step.
func (s *server) joinIPCheck(ip string) ratelimit.Check {
	return ratelimit.Check{Scope: scopeJoinIP, ID: ip, Rate: s.Limits.JoinPerIP}
}

func (s *server) joinUserCheck(user string) ratelimit.Check {
	return ratelimit.Check{Scope: scopeJoinUser, ID: user, Rate: s.Limits.JoinPerUser}
}

// limitByAPIKey is middleware that limits requests per bearer key
// (TOKEN_RATE), keyed by the key's SHA-256, never the key. Put it after
// requireKey, so that only valid keys are counted; requests without a key
// share one budget. Errors: 429 rate_limited.
func (s *server) limitByAPIKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		_, key, _ := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.RedisTimeout)
		err := s.limit(ctx, ratelimit.Check{Scope: scopeToken, ID: hex.EncodeToString(sum[:]), Rate: s.Limits.TokenPerKey})
		cancel()
		if err != nil {
			return err
		}
		return next(c)
	}
}

// limit asks the limiter about checks. A limiter that fails (Redis down or
// slower than ctx allows) lets the request through and is counted: a limit
// is protection, not a dependency. Errors: 429 rate_limited.
func (s *server) limit(ctx context.Context, checks ...ratelimit.Check) error {
	if s.Limits.Limiter == nil || allOff(checks) {
		return nil // no Redis step, so no budget to carve
	}
	// At most half of the request's Redis budget: a limiter that fails
	// (and lets the request through) leaves the step the other half.
	ctx, cancel := context.WithTimeout(ctx, s.RedisTimeout/2)
	defer cancel()
	res, err := s.Limits.Limiter.Allow(ctx, checks...)
	if err != nil {
		s.trust.limitErrors.Inc()
		s.Log.Warn("rate limiter failed; request allowed", "err", err)
		return nil
	}
	if !res.Allowed {
		s.trust.rejected.WithLabelValues(res.Scope).Inc()
		return rateLimited(res.RetryAfter)
	}
	return nil
}

func allOff(checks []ratelimit.Check) bool {
	for _, c := range checks {
		if !c.Rate.Off() {
			return false
		}
	}
	return true
}
