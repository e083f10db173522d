package snapshotter

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sweeps       prometheus.Counter
	timeouts     prometheus.Counter
	rows         prometheus.Counter
	deleted      *prometheus.CounterVec
	lastSnapshot prometheus.Gauge
	errors       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "viewpulse", "snapshotter"
	m := &metrics{
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sweeps_total", Help: "Sweeps of every known stage run."}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "timeouts_total", Help: "Timeout events appended for silent viewers."}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "snapshot_rows_total", Help: "Snapshot rows inserted (rows another snapshotter wrote first are not counted)."}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "deleted_rows_total", Help: "Rows deleted by retention, by table."}, []string{"table"}),
		lastSnapshot: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "last_snapshot_timestamp_seconds", Help: "The boundary of the last snapshot written, Unix seconds."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "errors_total", Help: "Failed steps, by step (sweep, snapshot, retention)."}, []string{"step"}),
	}
	reg.MustRegister(m.sweeps, m.timeouts, m.rows, m.deleted, m.lastSnapshot, m.errors)
	return m
}
