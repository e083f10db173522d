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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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
	// deadLetterMaxLen bounds the dead-letter stream (approximately).
	deadLetterMaxLen = 100_000
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
	cfg  Config
	rdb  redis.UniversalClient
	keys events.Keys
	db   *store.DB
	m    *Metrics

	recovering  bool      // next read is of this consumer's own pending entries
	claimCursor string    // XAUTOCLAIM scan position
	lastClaim   time.Time // when the last full XAUTOCLAIM scan ended
	failedID    string    // first entry of the batch that failed last
	failures    int       // how often it failed for its data
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
	return &Projector{cfg: cfg, rdb: rdb, keys: keys, db: db, m: m, recovering: true, claimCursor: "0-0"}
}

// Init creates the consumer group if it is missing, positioned at the
// stream's start (and the stream with it), so that nothing written before the
// first projector started is skipped.
func (p *Projector) Init(ctx context.Context) error {
	err := p.rdb.XGroupCreateMkStream(ctx, p.keys.Stream(), p.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %s: %w", p.cfg.Group, err)
	}
	return nil
}

// Step reads one batch and projects it: its own pending entries first after
// a start or a failure, then entries abandoned by other consumers, then new
// ones (blocking at most Config.Block). It returns how many entries it
// handled, including dead-lettered ones. On error nothing unapplied was
// acknowledged; the next Step retries the same entries.
func (p *Projector) Step(ctx context.Context) (int, error) {
	msgs, err := p.next(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		// The stream or group was deleted under us: recreate and read again.
		if err = p.Init(ctx); err == nil {
			msgs, err = p.next(ctx)
		}
	}
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if err := p.project(ctx, msgs); err != nil {
		p.recovering = true
		return 0, err
	}
	return len(msgs), nil
}

// next returns the next batch to project.
func (p *Projector) next(ctx context.Context) ([]redis.XMessage, error) {
	for p.recovering {
		msgs, err := p.read(ctx, "0", p.cfg.BatchSize, -1)
		if err != nil {
			return nil, err
		}
		live, err := p.dropDeleted(ctx, msgs)
		if err != nil {
			return nil, err
		}
		if len(live) > 0 {
			p.m.Redelivered.Add(float64(len(live)))
			return live, nil
		}
		if len(msgs) == 0 {
			p.recovering = false
		}
	}
	if now := p.cfg.Now(); p.claimCursor != "0-0" || now.Sub(p.lastClaim) >= p.cfg.ClaimEvery {
		msgs, err := p.claim(ctx)
		if err != nil {
			return nil, err
		}
		if p.claimCursor == "0-0" {
			p.lastClaim = now
		}
		if len(msgs) > 0 {
			p.m.Redelivered.Add(float64(len(msgs)))
			return msgs, nil
		}
	}
	msgs, err := p.read(ctx, ">", p.cfg.BatchSize, p.cfg.Block)
	if err != nil || len(msgs) == 0 || p.cfg.BatchWait <= 0 {
		return msgs, err
	}
	// The blocking read above runs on Redis's clock, so this wait does too.
	deadline := time.Now().Add(p.cfg.BatchWait)
	for len(msgs) < p.cfg.BatchSize {
		wait := time.Until(deadline)
		if wait < time.Millisecond {
			break
		}
		more, err := p.read(ctx, ">", p.cfg.BatchSize-len(msgs), wait)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, more...)
	}
	return msgs, nil
}

// read is XREADGROUP from id ("0": own pending entries, ">": new ones);
// block < 0 does not block.
func (p *Projector) read(ctx context.Context, id string, count int, block time.Duration) ([]redis.XMessage, error) {
	res, err := p.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: p.cfg.Group, Consumer: p.cfg.Consumer,
		Streams: []string{p.keys.Stream(), id}, Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stream: %w", err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Messages, nil
}

// claim takes over entries pending on any consumer for longer than
// ClaimMinIdle. Entries that were deleted from the stream while pending
// (trimmed, XDEL) are dropped from the group by Redis and only counted.
func (p *Projector) claim(ctx context.Context) ([]redis.XMessage, error) {
	msgs, next, deleted, err := p.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
		Stream: p.keys.Stream(), Group: p.cfg.Group, Consumer: p.cfg.Consumer,
		MinIdle: p.cfg.ClaimMinIdle, Start: p.claimCursor, Count: int64(p.cfg.BatchSize),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	p.claimCursor = next
	if err := p.forget(ctx, deleted); err != nil {
		return nil, err
	}
	// Redis before 7 reports deleted entries among the claimed ones, empty.
	return p.dropDeleted(ctx, msgs)
}

// dropDeleted acknowledges and counts entries of the own pending list whose
// content is gone from the stream, returning the others.
func (p *Projector) dropDeleted(ctx context.Context, msgs []redis.XMessage) ([]redis.XMessage, error) {
	var gone []string
	live := msgs[:0:0]
	for _, m := range msgs {
		if len(m.Values) == 0 {
			gone = append(gone, m.ID)
		} else {
			live = append(live, m)
		}
	}
	if err := p.forget(ctx, gone); err != nil {
		return nil, err
	}
	return live, nil
}

// forget acknowledges pending entries that are gone from the stream, counts
// them and says so: they were never projected, so a trim went too far or
// someone ran XDEL.
func (p *Projector) forget(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := p.ack(ctx, ids); err != nil {
		return err
	}
	p.m.Deleted.Add(float64(len(ids)))
	p.cfg.Log.Warn("pending entries were deleted from the stream before they were projected",
		"count", len(ids), "first_id", ids[0])
	return nil
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
	if err := p.ack(ctx, ids); err != nil {
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

func (p *Projector) ack(ctx context.Context, ids []string) error {
	if err := p.rdb.XAck(ctx, p.keys.Stream(), p.cfg.Group, ids...).Err(); err != nil {
		return fmt.Errorf("ack %d entries: %w", len(ids), err)
	}
	return nil
}

// deadLetter appends m to the dead-letter stream with the reason and
// acknowledges it, in one MULTI. Fields: id (the original entry ID), reason,
// consumer, and fields (the original fields as a JSON object, so that no
// original name can collide with ours).
func (p *Projector) deadLetter(ctx context.Context, m redis.XMessage, reason error) error {
	orig, err := json.Marshal(m.Values)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.ID, err)
	}
	_, err = p.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: p.keys.DeadLetter(), MaxLen: deadLetterMaxLen, Approx: true,
			Values: []any{"id", m.ID, "reason", reason.Error(), "consumer", p.cfg.Consumer, "fields", string(orig)},
		})
		pipe.XAck(ctx, p.keys.Stream(), p.cfg.Group, m.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.ID, err)
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

// Observe refreshes the lag and pending gauges from XINFO GROUPS.
func (p *Projector) Observe(ctx context.Context) error {
	groups, err := p.rdb.XInfoGroups(ctx, p.keys.Stream()).Result()
	if err != nil {
		return fmt.Errorf("group info: %w", err)
	}
	i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == p.cfg.Group })
	if i < 0 {
		return fmt.Errorf("group info: no group %s", p.cfg.Group)
	}
	g := groups[i]
	p.m.Lag.Set(float64(g.Lag))
	p.m.Pending.Set(float64(g.Pending))
	p.m.Backlog.Set(float64(g.Lag + g.Pending))
	return nil
}
