// Package projector moves events from the Redis stream into PostgreSQL,
// exactly once in effect: it reads the stream in a consumer group, folds each
// batch into one row change per session, merges the batch in one transaction
// (store.DB.ApplyBatch, whose merge rules are order-free and repeat-safe) and
// acknowledges the entries only after the commit. A crash anywhere leaves the
// entries pending; they are redelivered to this consumer when it restarts or
// claimed by another one after ClaimMinIdle, and applying them again changes
// nothing.
//
// It also trims the stream below what every group has acknowledged (Trim) and
// rebuilds the history from the stream into an empty database (Replay).
package projector

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/store"
)

// Defaults of Config's zero values.
const (
	DefaultGroup        = "projector"
	DefaultBatchSize    = 50_000 // measured: bench projector phase, see README "Performance"
	DefaultBlock        = time.Second
	DefaultClaimMinIdle = 30 * time.Second
	DefaultMaxAttempts  = 3
	// DefaultBatchTimeout matches the store's 60 s statement timeout: a
	// batch PostgreSQL would run longer is cancelled there anyway, and one
	// whose answers never come (a black-holed network) ends here.
	DefaultBatchTimeout = 60 * time.Second
	// DefaultStallWarning is how long a batch may take before Run says so.
	DefaultStallWarning = 10 * time.Second
)

// Config tunes a Projector. Zero values take the defaults above.
type Config struct {
	Group    string // consumer group, created from the stream's start if missing
	Consumer string // this consumer's name within the group; required
	// BatchSize is the most entries applied in one transaction.
	BatchSize int
	// BatchWait is how long a batch may wait to fill up after its first entry
	// arrived. Zero takes what the stream holds at the moment.
	BatchWait time.Duration
	// Block bounds each blocking read; a blocked read does not see ctx's
	// cancellation, so it must stay short.
	Block time.Duration
	// ClaimMinIdle is how long an entry must have been pending on another
	// consumer before this one claims it.
	ClaimMinIdle time.Duration
	// ClaimEvery is how often to look for such entries; zero: every Step.
	ClaimEvery time.Duration
	// MaintainEvery is how often Run trims the stream and refreshes the lag
	// and pending gauges, from a loop of its own, so that the gauges move
	// while a batch is stuck; zero: DefaultMaintainEvery.
	MaintainEvery time.Duration
	// BatchTimeout bounds the PostgreSQL side of one batch (COPY, merge,
	// commit) on the client; zero: DefaultBatchTimeout.
	BatchTimeout time.Duration
	// StallWarning: a batch in PostgreSQL for this long is logged as a
	// warning with its age, and again each time as long again passes;
	// zero: DefaultStallWarning.
	StallWarning time.Duration
	// MaxAttempts is how often a batch that PostgreSQL refuses for its data
	// (SQLSTATE class 22 or 23) is tried before it is split to find the
	// entry to dead-letter.
	MaxAttempts int
	// Retention enables Trim: entries younger than this stay in the stream
	// even when every group acknowledged them, so replay has a window. Zero
	// disables trimming.
	Retention time.Duration
	// Now is the clock for claim cadence and retention; tests replace it.
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics // nil: unregistered metrics

	// Test hooks, nil in production. BeforeApply runs before a batch is
	// applied and AfterCommit after its commit and before its XACK; an error
	// from either ends the Step there, as a crash at that point would.
	BeforeApply func(ids []string) error
	AfterCommit func(ids []string) error
}

// Projector is one consumer of the event stream's projector group.
type Projector struct {
	cfg Config
	c   *events.Consumer // the Redis side: read, claim, ack, dead-letter, trim
	db  *store.DB
	m   *Metrics

	failedID string // first entry of the batch that failed last
	failures int    // how often it failed for its data
}

// New returns a projector reading keys' stream with rdb and writing to db.
// Call Init (Run does) before Step.
func New(rdb redis.UniversalClient, keys events.Keys, db *store.DB, cfg Config) *Projector {
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Block <= 0 {
		cfg.Block = DefaultBlock
	}
	if cfg.ClaimMinIdle <= 0 {
		cfg.ClaimMinIdle = DefaultClaimMinIdle
	}
	if cfg.MaintainEvery <= 0 {
		cfg.MaintainEvery = DefaultMaintainEvery
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = DefaultBatchTimeout
	}
	if cfg.StallWarning <= 0 {
		cfg.StallWarning = DefaultStallWarning
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	m = m.Partition(keys.Partition())
	c := events.NewConsumer(rdb, keys, events.ConsumerConfig{
		Group: cfg.Group, Name: cfg.Consumer, BatchSize: cfg.BatchSize, BatchWait: cfg.BatchWait,
		Block: cfg.Block, ClaimMinIdle: cfg.ClaimMinIdle, ClaimEvery: cfg.ClaimEvery, Now: cfg.Now,
		Redelivered: func(n int) { m.Redelivered.Add(float64(n)) },
		Deleted: func(n int) {
			m.Deleted.Add(float64(n))
			cfg.Log.Warn("pending entries were deleted from the stream before they were projected", "count", n)
		},
	})
	return &Projector{cfg: cfg, c: c, db: db, m: m}
}

// Init creates the consumer group if it is missing, positioned at the
// stream's start (and the stream with it), so that nothing written before the
// first projector started is skipped.
func (p *Projector) Init(ctx context.Context) error { return p.c.Init(ctx) }

// TakeOver makes every entry pending in the group on any consumer this
// projector's, to be projected first: for a projector that has just been
// given the stream by its lease, whose previous reader died or gave it up
// (events.Consumer.TakeOver). It returns how many it took.
func (p *Projector) TakeOver(ctx context.Context) (int, error) { return p.c.TakeOver(ctx) }

// Step reads one batch and projects it: its own pending entries first after
// a start or a failure, then entries abandoned by other consumers, then new
// ones (blocking at most Config.Block). It returns how many entries it
// handled, including dead-lettered ones. On error nothing unapplied was
// acknowledged; the next Step retries the same entries.
func (p *Projector) Step(ctx context.Context) (int, error) {
	msgs, err := p.c.Next(ctx)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if err := p.project(ctx, msgs); err != nil {
		p.c.Recover()
		return 0, err
	}
	return len(msgs), nil
}

// project decodes msgs, dead-letters what cannot be decoded and applies the
// rest.
func (p *Projector) project(ctx context.Context, msgs []redis.XMessage) error {
	entries := make([]entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := events.Decode(m.ID, m.Values)
		if err != nil {
			if err := p.deadLetter(ctx, m, err); err != nil {
				return err
			}
			continue
		}
		entries = append(entries, entry{msg: m, ev: e})
	}
	if len(entries) == 0 {
		return nil
	}
	err := p.commit(ctx, entries)
	if err == nil {
		p.failedID, p.failures = "", 0
		return nil
	}
	if !refused(err) {
		return err
	}
	if p.failedID != entries[0].msg.ID {
		p.failedID, p.failures = entries[0].msg.ID, 0
	}
	p.failures++
	if p.failures < p.cfg.MaxAttempts {
		return err
	}
	p.cfg.Log.Warn("batch refused repeatedly; splitting it to find the entries to dead-letter",
		"first_id", entries[0].msg.ID, "entries", len(entries), "error", err)
	p.failedID, p.failures = "", 0
	return applySplitting(ctx, entries, p.commit, func(ctx context.Context, e entry, err error) error {
		return p.deadLetter(ctx, e.msg, err)
	})
}

// commit applies entries in one transaction and acknowledges them after the
// commit.
func (p *Projector) commit(ctx context.Context, entries []entry) error {
	ids := make([]string, len(entries))
	evs := make([]events.Event, len(entries))
	for i, e := range entries {
		ids[i], evs[i] = e.msg.ID, e.ev
	}
	if p.cfg.BeforeApply != nil {
		if err := p.cfg.BeforeApply(ids); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := p.apply(ctx, ids, Fold(evs)); err != nil {
		return err
	}
	p.m.ApplySeconds.Observe(time.Since(start).Seconds())
	p.m.BatchSize.Observe(float64(len(entries)))
	if p.cfg.AfterCommit != nil {
		if err := p.cfg.AfterCommit(ids); err != nil {
			return err
		}
	}
	if err := p.c.Ack(ctx, ids); err != nil {
		return err
	}
	p.m.Projected.Add(float64(len(entries)))
	return nil
}

// apply writes one folded batch within BatchTimeout, logging a warning
// every StallWarning while it waits on PostgreSQL.
func (p *Projector) apply(ctx context.Context, ids []string, rows []store.SessionDelta) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.BatchTimeout)
	defer cancel()
	start := time.Now()
	stalled := time.NewTicker(p.cfg.StallWarning)
	defer stalled.Stop()
	done := make(chan error, 1)
	go func() { done <- p.db.ApplyBatch(ctx, rows) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("apply batch of %d entries after %s: %w", len(ids), time.Since(start).Round(time.Millisecond), err)
			}
			return nil
		case <-stalled.C:
			p.m.Stalls.Inc()
			p.cfg.Log.Warn("batch stalled in PostgreSQL", "age", time.Since(start).Round(time.Second).String(),
				"entries", len(ids), "first_id", ids[0], "timeout", p.cfg.BatchTimeout.String())
		}
	}
}

// deadLetter moves m to the dead-letter stream with the reason (and
// acknowledges it), counts and logs it.
func (p *Projector) deadLetter(ctx context.Context, m redis.XMessage, reason error) error {
	if err := p.c.DeadLetter(ctx, m, reason); err != nil {
		return err
	}
	p.m.DeadLettered.Inc()
	p.cfg.Log.Warn("entry dead-lettered", "id", m.ID, "reason", reason.Error())
	return nil
}

// Run steps until ctx ends. A failing Step is retried with capped
// exponential backoff, acknowledging nothing meanwhile. When ctx ends, the
// batch in flight still gets drain to commit and acknowledge; then Run
// returns nil. Beside the batch loop, every Config.MaintainEvery, it trims
// the stream (with Retention set) and refreshes the lag, pending and backlog
// gauges from Redis.
func (p *Projector) Run(ctx context.Context, drain time.Duration) error {
	if err := p.Init(ctx); err != nil {
		return err
	}
	const minBackoff, maxBackoff = 100 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	maintained := make(chan struct{})
	go func() {
		defer close(maintained)
		p.maintainEvery(ctx)
	}()
	defer func() { <-maintained }()
	for ctx.Err() == nil {
		stepCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(ctx, func() { time.AfterFunc(drain, cancel) })
		n, err := p.Step(stepCtx)
		stop()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.cfg.Log.Warn("projector step failed; retrying", "error", err, "backoff", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		if n > 0 {
			p.cfg.Log.Debug("projected", "entries", n)
		}
	}
	return nil
}

// maintainEvery trims and refreshes the gauges at once and then every
// MaintainEvery until ctx ends, whatever the batch loop is doing: a batch
// stuck on PostgreSQL must not freeze the gauges that show it.
func (p *Projector) maintainEvery(ctx context.Context) {
	t := time.NewTicker(p.cfg.MaintainEvery)
	defer t.Stop()
	for {
		p.maintain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DefaultMaintainEvery is how often Run trims and refreshes the gauges.
const DefaultMaintainEvery = 15 * time.Second

func (p *Projector) maintain(ctx context.Context) {
	if p.cfg.Retention > 0 {
		if n, err := p.Trim(ctx); err != nil {
			p.cfg.Log.Warn("trim stream", "error", err)
		} else if n > 0 {
			p.cfg.Log.Info("trimmed stream", "entries", n)
		}
	}
	if err := p.Observe(ctx); err != nil {
		p.cfg.Log.Warn("observe group", "error", err)
	}
}

// Observe refreshes the lag, pending and backlog gauges from XINFO GROUPS.
func (p *Projector) Observe(ctx context.Context) error {
	b, err := p.c.Backlog(ctx)
	if err != nil {
		return err
	}
	p.m.Lag.Set(float64(b.Lag))
	p.m.Pending.Set(float64(b.Pending))
	p.m.Backlog.Set(float64(b.Lag + b.Pending))
	return nil
}
