package api

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/viewpulse/viewpulse/store"
)

// registerReplicaLag exports viewpulse_read_replica_lag_seconds: how far the
// read database (DATABASE_READ_URL) lags behind its primary, read from it at
// each scrape. History and stats answers are at most that much out of date.
// 0 for a primary; NaN when the read database does not answer.
func registerReplicaLag(reg *prometheus.Registry, db *store.DB) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "viewpulse_read_replica_lag_seconds",
		Help: "Seconds the read database's data lags behind the primary (0 for a primary, NaN when it does not answer); read answers are at most this old.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		lag, _, err := db.ReplicaLag(ctx)
		if err != nil {
			return math.NaN()
		}
		return lag
	}))
}
