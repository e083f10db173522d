package projector

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/lease"
	"github.com/viewpulse/viewpulse/store"
)

// Defaults of LeaseConfig's zero values.
const (
	DefaultLeaseTTL = 10 * time.Second
)

// LeaseConfig tunes how the projector processes of a deployment share its
// partitions.
type LeaseConfig struct {
	// TTL is how long a lease lasts unless renewed: after a projector dies,
	// its partitions are taken over within about TTL plus Renew. It should
	// stay below Config.ClaimMinIdle (the bound on a takeover without
	// leases). Default DefaultLeaseTTL.
	TTL time.Duration
	// Renew is how often leases are renewed and the share recomputed;
	// default TTL/3.
	Renew time.Duration
}

// Partitioned runs, in one process, the projectors of the partitions whose
// leases it holds. The projector processes of a deployment split its
// partitions between them: each announces itself (Keys.Projectors), takes
// leases (`SET <prefix>:{p<N>}:lease <name> NX PX <ttl>`) until it holds
// its share, ceil(partitions / live projectors), renews them every Renew by
// a script that checks it is still the holder, and gives extra ones back
// (after their batch in flight is committed and acknowledged) when more
// projectors come. A projector whose renewal finds the lease gone or taken,
// or that could not renew it for TTL, stops reading that partition. Whoever
// takes a lease first takes over the previous reader's pending entries
// (Projector.TakeOver), so a crashed projector's batch is projected by the
// next owner at once, not after ClaimMinIdle.
//
// So each partition is read by one projector at a time as long as its holder
// renews in time; a holder paused past the TTL (a stopped VM) may still
// commit the batch it had when it wakes, after the new owner took the
// entries over, which the repeat-safe merge absorbs.
type Partitioned struct {
	rdb    redis.UniversalClient
	prefix string
	parts  int
	db     *store.DB
	cfg    Config
	lease  LeaseConfig
	m      *Metrics
	log    *slog.Logger

	mu    sync.Mutex
	owned map[int]*worker
	wg    sync.WaitGroup
}

type worker struct {
	stop     context.CancelFunc
	renewed  time.Time // last successful renewal (or the acquisition)
	stopping bool      // stopped or being stopped: no longer counted as owned
}

// NewPartitioned returns the runner of partitions 0..parts-1 of prefix's
// deployment, writing to db; cfg is every partition projector's (its
// Consumer names this process, and must be unique among the live ones).
func NewPartitioned(rdb redis.UniversalClient, prefix string, parts int, db *store.DB, cfg Config, lease LeaseConfig) *Partitioned {
	if lease.TTL <= 0 {
		lease.TTL = DefaultLeaseTTL
	}
	if lease.Renew <= 0 {
		lease.Renew = lease.TTL / 3
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Partitioned{rdb: rdb, prefix: prefix, parts: max(parts, 1), db: db, cfg: cfg, lease: lease,
		m: cfg.Metrics, log: cfg.Log, owned: map[int]*worker{}}
}

// Owned lists the partitions this process reads now.
func (f *Partitioned) Owned() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for p := range f.parts {
		if w, ok := f.owned[p]; ok && !w.stopping {
			out = append(out, p)
		}
	}
	return out
}

// Run takes, renews and gives back leases every LeaseConfig.Renew and runs
// the projector of every partition it holds, until ctx ends. Then every
// projector gets drain to commit and acknowledge its batch in flight, the
// leases are given back and the process's announcement withdrawn, so the
// partitions are taken over at once rather than after the TTL.
func (f *Partitioned) Run(ctx context.Context, drain time.Duration) error {
	t := time.NewTicker(f.lease.Renew)
	defer t.Stop()
	for {
		f.tick(ctx, drain)
		select {
		case <-ctx.Done():
			f.shutdown()
			return nil
		case <-t.C:
		}
	}
}

func (f *Partitioned) shutdown() {
	f.mu.Lock()
	for _, w := range f.owned {
		w.stopping = true
		w.stop()
	}
	f.mu.Unlock()
	f.wg.Wait() // each worker gives its lease back as it ends
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f.rdb.ZRem(ctx, events.NewKeys(f.prefix).Projectors(), f.cfg.Consumer)
	f.m.Owned.Set(0)
}

// tick is one round: announce, renew, shed, acquire.
func (f *Partitioned) tick(ctx context.Context, drain time.Duration) {
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	live, err := f.announce(ctx, now)
	if err != nil {
		f.log.Warn("projector announcement failed", "error", err)
	}
	target := (f.parts + live - 1) / live

	f.mu.Lock()
	defer f.mu.Unlock()
	held := 0
	for p, w := range f.owned {
		// A projector being stopped keeps its lease while it commits its
		// last batch; it gives the lease back when it ends.
		ok, err := lease.Renew(ctx, f.rdb, f.keys(p).Lease(), f.cfg.Consumer, f.lease.TTL)
		switch {
		case w.stopping:
		case err == nil && ok:
			w.renewed = now
			held++
		case err == nil || now.Sub(w.renewed) >= f.lease.TTL:
			f.m.LeasesLost.Inc()
			f.log.Warn("partition lease lost; stopped reading it", "partition", p, "error", err)
			w.stopping = true
			w.stop()
		default:
			held++ // not renewed this time; it may be at the next
			f.log.Warn("partition lease renewal failed", "partition", p, "error", err)
		}
	}
	// Give back what is above the share, highest partitions first, so that
	// a newcomer finds them free.
	for p := f.parts - 1; p >= 0 && held > target; p-- {
		if w, ok := f.owned[p]; ok && !w.stopping {
			f.log.Info("giving a partition back to balance the projectors", "partition", p, "share", target)
			w.stopping = true
			w.stop()
			held--
		}
	}
	if held < target {
		// each process starts looking at another partition, so that
		// projectors started together rarely race for the same lease
		start := events.PartitionOf(f.cfg.Consumer, f.parts)
		for i := 0; i < f.parts && held < target; i++ {
			p := (start + i) % f.parts
			if _, ok := f.owned[p]; ok {
				continue
			}
			got, err := lease.Acquire(ctx, f.rdb, f.keys(p).Lease(), f.cfg.Consumer, f.lease.TTL)
			if err != nil {
				f.log.Warn("partition lease", "partition", p, "error", err)
				break
			}
			if got {
				f.start(ctx, p, now, drain)
				held++
			}
		}
	}
	f.m.Owned.Set(float64(held))
}

// announce records this process as live until now+TTL, drops expired
// announcements and returns how many projectors are live (at least 1).
func (f *Partitioned) announce(ctx context.Context, now time.Time) (int, error) {
	key := events.NewKeys(f.prefix).Projectors()
	var card *redis.IntCmd
	_, err := f.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.Add(f.lease.TTL).UnixMilli()), Member: f.cfg.Consumer})
		p.ZRemRangeByScore(ctx, key, "-inf", fmt.Sprint(now.UnixMilli()))
		card = p.ZCard(ctx, key)
		return nil
	})
	if err != nil {
		return 1, err
	}
	return max(int(card.Val()), 1), nil
}

// start runs partition p's projector under its new lease (f.mu held).
func (f *Partitioned) start(ctx context.Context, p int, now time.Time, drain time.Duration) {
	wctx, stop := context.WithCancel(ctx)
	f.owned[p] = &worker{stop: stop, renewed: now}
	keys := f.keys(p)
	proj := New(f.rdb, keys, f.db, f.cfg)
	log := f.log.With("partition", p)
	log.Info("partition lease taken; reading it")
	f.wg.Go(func() {
		defer f.ended(p, keys)
		if err := proj.Init(wctx); err != nil {
			log.Warn("partition init failed", "error", err)
			return
		}
		n, err := proj.TakeOver(wctx)
		if err != nil {
			log.Warn("taking over the partition's pending entries failed", "error", err)
			return
		}
		if n > 0 {
			log.Info("took over pending entries of the partition's previous reader", "entries", n)
		}
		_ = proj.Run(wctx, drain)
	})
}

// ended gives partition p's lease back (if still this process's) once its
// projector has stopped, and forgets its gauges.
func (f *Partitioned) ended(p int, keys events.Keys) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := lease.Release(ctx, f.rdb, keys.Lease(), f.cfg.Consumer); err != nil {
		f.log.Warn("giving the partition lease back failed; it expires by itself", "partition", p, "error", err)
	}
	f.mu.Lock()
	delete(f.owned, p)
	f.mu.Unlock()
	f.m.Forget(p)
}

func (f *Partitioned) keys(p int) events.Keys { return events.PartitionKeys(f.prefix, p) }
