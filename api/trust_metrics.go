package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/events"
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
		if wb := s.WriteBehind; wb != nil {
			registerWriteBehind(s.Registry, wb)
		}
	}
	return m
}

// registerWriteBehind exports events.WriteBehind's counters and sizes.
func registerWriteBehind(reg prometheus.Registerer, wb *events.WriteBehind) {
	for _, m := range []struct {
		name, help string
		gauge      bool
		value      func(events.WriteBehindStats) float64
	}{
		{"viewpulse_write_behind_hits_total", "Heartbeats answered from memory, their presence flushed later.", false,
			func(s events.WriteBehindStats) float64 { return float64(s.Hits) }},
		{"viewpulse_write_behind_misses_total", "Heartbeats that took their Redis step (unknown here, a record due, a stale count, or failing flushes).", false,
			func(s events.WriteBehindStats) float64 { return float64(s.Misses) }},
		{"viewpulse_write_behind_flush_errors_total", "Presence flush calls that failed (their entries were queued again).", false,
			func(s events.WriteBehindStats) float64 { return float64(s.FlushErrors) }},
		{"viewpulse_write_behind_flushed_total", "Presences written by flushes.", false,
			func(s events.WriteBehindStats) float64 { return float64(s.Flushed) }},
		{"viewpulse_write_behind_gone_total", "Sessions a flush found closed or expired (forgotten, their presence not written).", false,
			func(s events.WriteBehindStats) float64 { return float64(s.Gone) }},
		{"viewpulse_write_behind_sessions", "Sessions held in the write-behind cache.", true,
			func(s events.WriteBehindStats) float64 { return float64(s.Sessions) }},
		{"viewpulse_write_behind_pending", "Presences answered and not yet flushed.", true,
			func(s events.WriteBehindStats) float64 { return float64(s.Pending) }},
	} {
		read := func() float64 { return m.value(wb.Stats()) }
		if m.gauge {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: m.name, Help: m.help}, read))
		} else {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, read))
		}
	}
}
