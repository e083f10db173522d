package projector

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the projector's Prometheus metrics. Several projectors of one
// process may share one Metrics.
type Metrics struct {
	Projected    prometheus.Counter   // entries applied and acknowledged
	BatchSize    prometheus.Histogram // entries per committed batch
	ApplySeconds prometheus.Histogram // COPY + merge + commit of one batch
	Lag          prometheus.Gauge     // entries not yet delivered to the group
	Pending      prometheus.Gauge     // entries delivered but not acknowledged
	Backlog      prometheus.Gauge     // Lag + Pending: entries not yet projected
	Stalls       prometheus.Counter   // stall warnings of batches waiting on PostgreSQL
	DeadLettered prometheus.Counter   // entries moved to the dead-letter stream
	Redelivered  prometheus.Counter   // entries read again: own pending after a failure or restart, or claimed
	Deleted      prometheus.Counter   // pending entries found deleted from the stream (never projected)
	Trimmed      prometheus.Counter   // entries removed by Trim
}

// NewMetrics creates the metrics and registers them on reg unless reg is
// nil. It panics if they are registered there already, as MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "viewpulse", "projector"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &Metrics{
		Projected: counter("events_projected_total", "Stream entries applied to PostgreSQL and acknowledged."),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "batch_size", Help: "Entries per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		ApplySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "apply_seconds", Help: "COPY, merge and commit of one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}),
		Lag:          gauge("lag", "Stream entries not yet delivered to the group (XINFO GROUPS lag)."),
		Pending:      gauge("pending", "Stream entries delivered to the group and not yet acknowledged."),
		Backlog:      gauge("backlog", "Stream entries not yet projected: lag plus pending."),
		Stalls:       counter("batch_stalls_total", "Warnings of a batch waiting on PostgreSQL for longer than the stall warning."),
		DeadLettered: counter("dead_lettered_total", "Stream entries moved to the dead-letter stream."),
		Redelivered:  counter("redeliveries_total", "Stream entries delivered again (own pending entries or claimed ones)."),
		Deleted:      counter("deleted_pending_total", "Pending entries deleted from the stream before they were projected."),
		Trimmed:      counter("trimmed_total", "Stream entries removed by trimming."),
	}
	if reg != nil {
		reg.MustRegister(m.Projected, m.BatchSize, m.ApplySeconds, m.Lag, m.Pending, m.Backlog, m.Stalls,
			m.DeadLettered, m.Redelivered, m.Deleted, m.Trimmed)
	}
	return m
}
