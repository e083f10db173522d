package main

import (
	"github.com/viewpulse/viewpulse/api"
	"github.com/viewpulse/viewpulse/internal/config"
	"github.com/viewpulse/viewpulse/internal/ratelimit"
)

// limitSettings holds the player-trust settings besides tokens: rate limits,
// IP storage and the heartbeat skip.
type limitSettings struct {
	joinPerIP, joinPerUser, tokenPerKey ratelimit.Rate
	ipStorage                           api.IPStorage
	heartbeatSkip                       bool
}

// readLimits reads JOIN_RATE, JOIN_RATE_PER_USER, TOKEN_RATE, IP_STORAGE and
// HEARTBEAT_SKIP.
func readLimits(env *config.Env) limitSettings {
	return limitSettings{
		joinPerIP:     readRate(env, "JOIN_RATE", "600/m"),
		joinPerUser:   readRate(env, "JOIN_RATE_PER_USER", "20/m"),
		tokenPerKey:   readRate(env, "TOKEN_RATE", "6000/m"),
		ipStorage:     readIPStorage(env),
		heartbeatSkip: env.Bool("HEARTBEAT_SKIP", true),
	}
}

// limits returns the api's rate limits, their state kept by l.
func (t limitSettings) limits(l *ratelimit.Limiter) api.RateLimits {
	return api.RateLimits{Limiter: l, JoinPerIP: t.joinPerIP, JoinPerUser: t.joinPerUser, TokenPerKey: t.tokenPerKey}
}

func readRate(env *config.Env, name, def string) ratelimit.Rate {
	raw := env.String(name, def)
	r, err := ratelimit.ParseRate(raw)
	if err != nil {
		env.Fail(name, "N/s, N/m or N/h (N a positive integer), or off", raw)
	}
	return r
}

func readIPStorage(env *config.Env) api.IPStorage {
	raw := env.String("IP_STORAGE", string(api.IPFull))
	m, err := api.ParseIPStorage(raw)
	if err != nil {
		env.Fail("IP_STORAGE", "full, truncated or none", raw)
	}
	return m
}
