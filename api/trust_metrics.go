package api

import (
	"github.com/prometheus/client_golang/prometheus"
)

// trustMetrics count what the player-trust measures did: rate-limit
// refusals and failures, and heartbeats answered from memory.
type trustMetrics struct {
	rejected    *prometheus.CounterVec
	limitErrors prometheus.Counter
	skipped     prometheus.Counter
}

func newTrustMetrics(s *server) *trustMetrics {
	m := &trustMetrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viewpulse_ratelimit_rejected_total", Help: "Requests refused 429 rate_limited, by limit (join_ip, join_user, token).",
		}, []string{"scope"}),
		limitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "viewpulse_ratelimit_errors_total", Help: "Rate-limit checks that failed (Redis down or slow); the request was allowed.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "viewpulse_heartbeats_skipped_total", Help: "Heartbeats answered from memory without a Redis step (sooner than half the interval after the last).",
		}),
	}
	for _, scope := range []string{scopeJoinIP, scopeJoinUser, scopeToken} {
		m.rejected.WithLabelValues(scope)
	}
	if s.Registry != nil {
		s.Registry.MustRegister(m.rejected, m.limitErrors, m.skipped,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "viewpulse_heartbeat_skip_sessions", Help: "Sessions held in memory for skipping early heartbeats.",
			}, func() float64 { return float64(s.beats.len(s.now())) }))
	}
	return m
}
