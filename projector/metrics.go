package projector

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the projector's Prometheus metrics. Several projectors of one
// process may share one Metrics; the gauges of a stream (lag, pending,
// backlog) carry its partition as the label "partition" (Partition).
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
	Owned        prometheus.Gauge     // partitions whose lease this process holds (Partitioned)
	LeasesLost   prometheus.Counter   // leases found taken or expired at renewal: that partition's reading stopped

	lag, pending, backlog *prometheus.GaugeVec
}

// Partition returns the metrics of the projector of partition p: the same
// counters, and the gauges labelled partition="p".
func (m *Metrics) Partition(p int) *Metrics {
	c := *m
	l := strconv.Itoa(p)
	c.Lag, c.Pending, c.Backlog = m.lag.WithLabelValues(l), m.pending.WithLabelValues(l), m.backlog.WithLabelValues(l)
	return &c
}

// Forget drops the gauges of partition p: this process no longer reads it,
// and its new owner reports them.
func (m *Metrics) Forget(p int) {
	l := strconv.Itoa(p)
	m.lag.DeleteLabelValues(l)
	m.pending.DeleteLabelValues(l)
	m.backlog.DeleteLabelValues(l)
}

// NewMetrics creates the metrics and registers them on reg unless reg is
// nil. It panics if they are registered there already, as MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "viewpulse", "projector"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{"partition"})
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
		lag:          gauge("lag", "Stream entries not yet delivered to the group (XINFO GROUPS lag), per partition, reported by its reader."),
		pending:      gauge("pending", "Stream entries delivered to the group and not yet acknowledged, per partition."),
		backlog:      gauge("backlog", "Stream entries not yet projected: lag plus pending, per partition."),
		Stalls:       counter("batch_stalls_total", "Warnings of a batch waiting on PostgreSQL for longer than the stall warning."),
		DeadLettered: counter("dead_lettered_total", "Stream entries moved to the dead-letter stream."),
		Redelivered:  counter("redeliveries_total", "Stream entries delivered again (own pending entries or claimed ones)."),
		Deleted:      counter("deleted_pending_total", "Pending entries deleted from the stream before they were projected."),
		Trimmed:      counter("trimmed_total", "Stream entries removed by trimming."),
		Owned: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "partitions_owned",
			Help: "Partitions whose lease this process holds and reads."}),
		LeasesLost: counter("leases_lost_total", "Partition leases found taken or expired when renewed; reading that partition stopped."),
	}
	m.Lag, m.Pending, m.Backlog = m.lag.WithLabelValues("0"), m.pending.WithLabelValues("0"), m.backlog.WithLabelValues("0")
	if reg != nil {
		reg.MustRegister(m.Projected, m.BatchSize, m.ApplySeconds, m.lag, m.pending, m.backlog, m.Stalls,
			m.DeadLettered, m.Redelivered, m.Deleted, m.Trimmed, m.Owned, m.LeasesLost)
	}
	return m
}
