// Package snapshotter runs ViewPulse's background duties: it sweeps viewers
// silent past the heartbeat timeout out of the live state (appending timeout
// events), writes one count row per active stage at every snapshot interval
// boundary, and deletes history past its retention.
//
// Any number of snapshotters may run against one deployment: the sweep is an
// atomic Redis step per batch, and snapshot rows are inserted with
// ON CONFLICT DO NOTHING on (stage, boundary).
//
// # Rules
//
// Boundaries are multiples of the interval since the Unix epoch (12:00, 12:05,
// …). The snapshotter wakes right after a boundary B and reads the live count
// then; that reading, taken milliseconds after B, is the row's count at B.
//
// Which stages get a row at B: every stage whose last join or heartbeat L is
// younger than interval+timeout at B (so a viewer may have been present at
// some moment of the interval that ended at B), except one whose newest row
// already says 0 and that has seen no join or heartbeat since that row. So a
// stage that empties, by leaves or timeouts, gets exactly one 0 row, at the
// first boundary where it is empty, and then no more rows until it is active
// again.
//
// Peak at B: the highest of the count at B, the count of the row at B-interval
// (the count the interval started with) when that row exists, and the
// per-minute peaks ingest recorded at every join in [B-interval, B).
//
// Downtime: missed boundaries are not filled in; nobody knows their counts.
// At start, and whenever a wake-up is late, only the latest boundary is
// written, and only if it passed less than Grace ago; otherwise it is skipped
// and logged.
//
// Forgetting a stage: the sweep drops an empty stage from the live stage list
// once its last join or heartbeat is older than timeout + 2×interval. By then
// the first boundary at which it was empty (at most timeout + interval after
// that last sign of life) has passed with its grace, so its 0 row was
// written.
package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sourcegraph/conc"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/store"
)

// Config tunes a Snapshotter; zero values take the defaults.
type Config struct {
	SweepInterval    time.Duration // default 5s
	SnapshotInterval time.Duration // default 5m
	// Grace is how late after a boundary its row may still be written;
	// default a fifth of SnapshotInterval but at most one minute, never more
	// than SnapshotInterval.
	Grace             time.Duration
	SnapshotRetention time.Duration // default 2160h (90 days)
	SessionRetention  time.Duration // 0: keep sessions forever
	RetentionEvery    time.Duration // default 24h
	SweepLimit        int           // viewers closed per Redis step, default 1000
	DeleteBatch       int           // rows per retention statement, default store.DefaultDeleteBatch
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.SweepInterval, 5*time.Second)
	def(&c.SnapshotInterval, 5*time.Minute)
	def(&c.Grace, min(c.SnapshotInterval/5, time.Minute))
	// The forgetting rule leaves a stage listed for one interval past its
	// last possible 0 row; a longer grace could outlive that.
	c.Grace = min(c.Grace, c.SnapshotInterval)
	def(&c.SnapshotRetention, 2160*time.Hour)
	def(&c.RetentionEvery, 24*time.Hour)
	if c.SweepLimit <= 0 {
		c.SweepLimit = 1000
	}
	if c.DeleteBatch <= 0 {
		c.DeleteBatch = store.DefaultDeleteBatch
	}
	return c
}

// Snapshotter sweeps, snapshots and cleans up one deployment.
type Snapshotter struct {
	stream  *events.Stream
	db      *store.DB
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	// Now is the clock. Tests set it, and the stream's Now, to one fake
	// clock; Run computes its timers from it.
	Now func() time.Time
}

// New returns a Snapshotter over stream and db whose metrics are registered
// on reg. It panics if reg already holds them (a programming error).
func New(stream *events.Stream, db *store.DB, cfg Config, log *slog.Logger, reg prometheus.Registerer) *Snapshotter {
	return &Snapshotter{
		stream:  stream,
		db:      db,
		cfg:     cfg.withDefaults(),
		log:     log,
		metrics: newMetrics(reg),
		Now:     time.Now,
	}
}

// Run sweeps every SweepInterval, snapshots at every boundary and applies
// retention at start and every RetentionEvery, until ctx ends. A failed step
// is logged and counted, and the loop goes on. It returns nil once every loop
// has stopped.
func (s *Snapshotter) Run(ctx context.Context) error {
	var wg conc.WaitGroup
	wg.Go(func() { s.every(ctx, "sweep", s.cfg.SweepInterval, s.SweepOnce) })
	wg.Go(func() { s.every(ctx, "retention", s.cfg.RetentionEvery, s.RetainOnce) })
	wg.Go(func() { s.snapshotLoop(ctx) })
	wg.Wait()
	return nil
}

// every runs step now and then every interval until ctx ends.
func (s *Snapshotter) every(ctx context.Context, name string, interval time.Duration, step func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := step(ctx); err != nil && ctx.Err() == nil {
			s.metrics.errors.WithLabelValues(name).Inc()
			s.log.Error(name+" failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshotLoop writes the latest boundary if it is within grace, then sleeps
// until just after each next boundary and writes it. A failed write is
// retried every SweepInterval while the boundary is within grace.
func (s *Snapshotter) snapshotLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var done time.Time // the last boundary written or given up on
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := s.Now()
		b := Boundary(now, s.cfg.SnapshotInterval)
		wait := b.Add(s.cfg.SnapshotInterval).Sub(now)
		switch late := now.Sub(b); {
		case !b.After(done):
		case late > s.cfg.Grace:
			if done.IsZero() {
				s.log.Debug("started past the grace of the latest boundary; first snapshot at the next one", "boundary", b)
			} else {
				s.log.Warn("skipping a snapshot boundary: woke too late", "boundary", b, "late", late)
			}
			done = b
		default:
			if _, err := s.SnapshotAt(ctx, b); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.metrics.errors.WithLabelValues("snapshot").Inc()
				s.log.Error("snapshot failed", "boundary", b, "err", err)
				wait = min(wait, s.cfg.SweepInterval)
				break
			}
			done = b
		}
		timer.Reset(wait)
	}
}

// Boundary returns the latest multiple of interval since the Unix epoch at
// or before t.
func Boundary(t time.Time, interval time.Duration) time.Time {
	ms, step := t.UnixMilli(), interval.Milliseconds()
	b := ms - ms%step
	if ms < 0 && ms%step != 0 {
		b -= step
	}
	return time.UnixMilli(b).UTC()
}

// SweepOnce closes, with timeout events, every viewer silent past the timeout
// in every known stage, and lets the stream forget stages idle past the
// forgetting rule (see the package comment). Errors: Redis's own; the
// stages after a failing one are still swept.
func (s *Snapshotter) SweepOnce(ctx context.Context) error {
	stages, err := s.stream.Stages(ctx, time.Time{})
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	idleBefore := s.Now().Add(-(s.stream.Timeout() + 2*s.cfg.SnapshotInterval))
	var errs []error
	for _, st := range stages {
		for {
			n, err := s.stream.Sweep(ctx, st.Stage, s.cfg.SweepLimit, idleBefore)
			s.metrics.timeouts.Add(float64(n))
			if err != nil {
				errs = append(errs, err)
			}
			if err != nil || n < s.cfg.SweepLimit {
				break
			}
		}
	}
	s.metrics.sweeps.Inc()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}

// SnapshotAt writes the rows of boundary b for every stage the rules in the
// package comment select, with the live counts read now, and returns how
// many rows it inserted (rows another snapshotter wrote first are not
// counted). Errors: Redis's or the database's own.
func (s *Snapshotter) SnapshotAt(ctx context.Context, b time.Time) (inserted int64, err error) {
	interval, timeout := s.cfg.SnapshotInterval, s.stream.Timeout()
	start := b.Add(-interval)
	stages, err := s.stream.Stages(ctx, start.Add(-timeout))
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", b.Format(time.RFC3339), err)
	}
	names := make([]string, len(stages))
	for i, st := range stages {
		names[i] = st.Stage
	}
	// The newest earlier row of each stage, looked for as far back as a
	// stage can be listed: a 0 row older than that cannot matter.
	prev, err := s.db.LatestSnapshots(ctx, names, start.Add(-timeout), b)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", b.Format(time.RFC3339), err)
	}
	rows := make([]store.Snapshot, 0, len(stages))
	for _, st := range stages {
		p, hasPrev := prev[st.Stage]
		if st.Viewers == 0 && hasPrev && p.Viewers == 0 && st.LastActivity.Before(p.Time) {
			continue // already recorded empty, nothing since
		}
		peak, err := s.stream.Peak(ctx, st.Stage, start, b)
		if err != nil {
			return 0, fmt.Errorf("snapshot %s: %w", b.Format(time.RFC3339), err)
		}
		peak = max(peak, st.Viewers)
		if hasPrev && p.Time.Equal(start) {
			peak = max(peak, p.Viewers)
		}
		rows = append(rows, store.Snapshot{Stage: st.Stage, Time: b, Viewers: st.Viewers, Peak: peak})
	}
	n, err := s.db.InsertSnapshots(ctx, rows)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", b.Format(time.RFC3339), err)
	}
	s.metrics.rows.Add(float64(n))
	s.metrics.lastSnapshot.Set(float64(b.Unix()))
	// The interval's peaks are used: drop them now rather than at their
	// expiry. Rows are in, so a snapshotter racing this one either read the
	// same peaks or finds its rows already written (ON CONFLICT DO NOTHING).
	used := make([]string, len(rows))
	for i, r := range rows {
		used[i] = r.Stage
	}
	if err := s.stream.ForgetPeaks(ctx, used, start, b); err != nil {
		s.log.Warn("peaks not forgotten; they expire by themselves", "boundary", b, "err", err)
	}
	s.log.Debug("snapshot written", "boundary", b, "stages", len(rows), "inserted", n)
	return n, nil
}

// RetainOnce deletes snapshot rows older than SnapshotRetention and, when
// SessionRetention is set, closed sessions that left before it, in small
// batches. Errors: the database's own.
func (s *Snapshotter) RetainOnce(ctx context.Context) error {
	now := s.Now()
	n, err := s.db.DeleteSnapshotsBefore(ctx, now.Add(-s.cfg.SnapshotRetention), s.cfg.DeleteBatch)
	s.metrics.deleted.WithLabelValues("viewer_stats_snapshots").Add(float64(n))
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if s.cfg.SessionRetention <= 0 {
		return nil
	}
	n, err = s.db.DeleteSessionsLeftBefore(ctx, now.Add(-s.cfg.SessionRetention), s.cfg.DeleteBatch)
	s.metrics.deleted.WithLabelValues("viewer_sessions").Add(float64(n))
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	return nil
}
