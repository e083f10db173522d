package webhooks

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/viewpulse/viewpulse/events"
	"github.com/viewpulse/viewpulse/internal/lease"
)

// WatcherConfig tunes a StageWatcher; zero values take the defaults.
type WatcherConfig struct {
	// Interval is how often the live counts are read. Default 1s.
	Interval time.Duration
	// LeaseTTL is how long the watcher lease lasts unless renewed (every
	// Interval): after the active watcher dies, another takes over within
	// it. Default 10s.
	LeaseTTL time.Duration
	// Name is this watcher's name in the lease; default host-pid-random.
	Name string
	// Groups, when set, is stepped after the stages on every step of the
	// active watcher (the group events).
	Groups *GroupDetector
}

// StageWatcher sends stage.live when a stage goes from no viewer (or not
// listed) to one or more, and stage.empty when it goes back to none or is
// no longer listed, from the live counts in Redis (events.Stream.Stages).
//
// Any number may run on one deployment: one at a time is active, the holder
// of the lease KeyLease (SET NX PX, renewed by a script that checks the
// holder). The others try to take it at every Interval.
//
// # Exactly one event per transition
//
// The state is in Redis, not in the active watcher: KeyTransitions maps each
// stage to the number n of its last transition (odd: live, even: empty; 0
// or no field: never live). A change is sent as transition n+1, with the id
// TransitionID(epoch, stage, n+1), queued in the outbox first and then
// committed (n+1 stored, only by the lease holder and only over n). A
// watcher that dies between the two leaves transition n+1 queued and not
// committed; its successor, on taking the lease, looks up the id of every
// stage's next transition in the outbox and commits those it finds, before
// it compares any count. So a takeover neither sends a transition twice
// (the ids are the same whoever computes them, and the outbox keeps the
// first) nor loses one, and what a receiver sees for a stage alternates
// live, empty, live, …
//
// The epoch (KeyEpoch, random, made once) is part of every id, so that if
// Redis loses this state the restarted counters do not reuse the ids of
// events still in the outbox (they would be dropped as duplicates).
//
// Changes shorter than Interval are not seen, and a stage that empties and
// fills again between two looks stays live (no event).
type StageWatcher struct {
	stream *events.Stream
	rdb    redis.UniversalClient
	emit   *Emitter
	cfg    WatcherConfig
	log    *slog.Logger
	keys   [3]string // lease, transitions, epoch
	m      *watcherMetrics
	// Now is the clock of the events' times.
	Now func() time.Time

	// Run's own, between steps:
	leader  bool
	renewed time.Time
	epoch   string
	counts  map[string]int64 // stage -> last committed transition; nil: reload
}

// The stage watcher's keys carry the hash tag {wh}, so that one script may
// touch them all on a cluster.

// KeyLease is the string naming the active stage watcher (SET NX PX).
func KeyLease(prefix string) string { return prefix + ":{wh}:watcher" }

// KeyTransitions is the hash stage ARN -> number of its last transition.
func KeyTransitions(prefix string) string { return prefix + ":{wh}:transitions" }

// KeyEpoch is the random string, made once, that every transition id
// carries.
func KeyEpoch(prefix string) string { return prefix + ":{wh}:epoch" }

// NewStageWatcher returns a watcher of stream's stages that sends through
// emit, with its metrics registered on reg. It panics if reg already holds
// them (a programming error).
func NewStageWatcher(stream *events.Stream, emit *Emitter, cfg WatcherConfig, log *slog.Logger, reg prometheus.Registerer) *StageWatcher {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = host + "-" + strconv.Itoa(os.Getpid()) + "-" + randomHex(4)
	}
	p := stream.Prefix()
	return &StageWatcher{
		stream: stream, rdb: stream.Client(), emit: emit, cfg: cfg, log: log.With("watcher", cfg.Name),
		keys: [3]string{KeyLease(p), KeyTransitions(p), KeyEpoch(p)},
		m:    newWatcherMetrics(reg),
		Now:  time.Now,
	}
}

// Run steps every Interval until ctx ends, then gives the lease back (so
// another watcher takes over at once) and returns nil. A failed step is
// logged and the loop goes on.
func (w *StageWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	defer w.release()
	for {
		if err := w.Step(ctx); err != nil && ctx.Err() == nil {
			w.log.Error("stage watcher step failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Step takes or renews the lease and, while this watcher holds it, sends
// the transitions since the last step. Errors: Redis's or the database's
// own; what was not sent is sent by a later step.
func (w *StageWatcher) Step(ctx context.Context) error {
	if err := w.lead(ctx); err != nil || !w.leader {
		return err
	}
	if w.counts == nil {
		if err := w.load(ctx); err != nil {
			return err
		}
	}
	stages, err := w.stream.Stages(ctx, time.Time{})
	if err != nil {
		return fmt.Errorf("stage watcher: %w", err)
	}
	viewers := make(map[string]int64, len(stages))
	for _, st := range stages {
		viewers[st.Stage] = st.Viewers
	}
	var changed []string
	for stage, n := range viewers {
		if (n > 0) != live(w.counts[stage]) {
			changed = append(changed, stage)
		}
	}
	for stage, n := range w.counts {
		if _, listed := viewers[stage]; !listed && live(n) {
			changed = append(changed, stage) // forgotten while live
		}
	}
	slices.Sort(changed)
	now := w.Now()
	for _, stage := range changed {
		if err := w.transition(ctx, stage, viewers[stage], now); err != nil {
			return err
		}
		if !w.leader {
			return nil
		}
	}
	if w.cfg.Groups != nil {
		return w.cfg.Groups.Step(ctx, w.epoch, now)
	}
	return nil
}

// TransitionID is the id of stage's n-th transition in epoch: "evt_" and 26
// base32 characters of SHA-256 of the three, the same for every watcher.
func TransitionID(epoch, stage string, n int64) string {
	sum := sha256.Sum256([]byte(epoch + "\x00" + stage + "\x00" + strconv.FormatInt(n, 10)))
	return "evt_" + base32.StdEncoding.EncodeToString(sum[:])[:26]
}

func live(n int64) bool { return n%2 == 1 }

// transition sends stage's next transition, then commits it.
func (w *StageWatcher) transition(ctx context.Context, stage string, viewers int64, now time.Time) error {
	n := w.counts[stage]
	typ := StageLive
	if live(n) {
		typ = StageEmpty
	}
	ev := Event{ID: TransitionID(w.epoch, stage, n+1), Type: typ, At: now,
		Data: StageData{StageARN: stage, Viewers: viewers, At: now.UTC().Truncate(time.Millisecond)}}
	if err := w.emit.Notify(ctx, ev); err != nil {
		return fmt.Errorf("stage watcher: %s %s: %w", typ, stage, err)
	}
	w.m.transitions.WithLabelValues(typ).Inc()
	return w.commit(ctx, stage, n)
}

// commit stores transition n+1 of stage if this watcher holds the lease and
// n is still the stage's last. When it is not (the lease was lost), Step
// stops; the next holder finds the transition queued.
func (w *StageWatcher) commit(ctx context.Context, stage string, n int64) error {
	res, err := commitScript.Run(ctx, w.rdb, w.keys[:2], w.cfg.Name, stage, n, n+1).Int()
	switch {
	case err != nil:
		w.counts = nil // reload: it may have been stored
		return fmt.Errorf("stage watcher: commit %s: %w", stage, err)
	case res == -1:
		w.lost()
	case res == 0:
		w.counts = nil // changed under us: reload
		return fmt.Errorf("stage watcher: transition %d of %s already committed", n+1, stage)
	default:
		w.counts[stage] = n + 1
	}
	return nil
}

// load reads the epoch (making it if there is none) and the transition
// counts, and commits every next transition a previous holder queued but did
// not commit.
func (w *StageWatcher) load(ctx context.Context) error {
	if err := w.rdb.SetNX(ctx, w.keys[2], randomHex(8), 0).Err(); err != nil {
		return fmt.Errorf("stage watcher: epoch: %w", err)
	}
	epoch, err := w.rdb.Get(ctx, w.keys[2]).Result()
	if err != nil {
		return fmt.Errorf("stage watcher: epoch: %w", err)
	}
	raw, err := w.rdb.HGetAll(ctx, w.keys[1]).Result()
	if err != nil {
		return fmt.Errorf("stage watcher: transitions: %w", err)
	}
	stages, err := w.stream.Stages(ctx, time.Time{})
	if err != nil {
		return fmt.Errorf("stage watcher: %w", err)
	}
	w.epoch, w.counts = epoch, make(map[string]int64, len(raw))
	for stage, v := range raw {
		n, _ := strconv.ParseInt(v, 10, 64)
		w.counts[stage] = n
	}
	next := map[string]string{} // id of the next transition -> stage
	for stage, n := range w.counts {
		next[TransitionID(epoch, stage, n+1)] = stage
	}
	for _, st := range stages {
		next[TransitionID(epoch, st.Stage, w.counts[st.Stage]+1)] = st.Stage
	}
	ids := make([]string, 0, len(next))
	for id := range next {
		ids = append(ids, id)
	}
	queued, err := w.emit.outbox.Enqueued(ctx, ids)
	if err != nil {
		w.counts = nil
		return fmt.Errorf("stage watcher: %w", err)
	}
	for id := range queued {
		stage := next[id]
		w.log.Info("committing a transition queued by the previous watcher", "stage", stage, "transition", w.counts[stage]+1)
		if err := w.commit(ctx, stage, w.counts[stage]); err != nil || !w.leader {
			return err
		}
	}
	return nil
}

// lead takes the lease when it is free, or renews it when held. A renewal
// that fails on an error keeps the lease until its TTL has passed since the
// last renewal.
func (w *StageWatcher) lead(ctx context.Context) error {
	now := time.Now()
	if w.leader {
		ok, err := lease.Renew(ctx, w.rdb, w.keys[0], w.cfg.Name, w.cfg.LeaseTTL)
		switch {
		case err == nil && ok:
			w.renewed = now
		case err == nil || now.Sub(w.renewed) >= w.cfg.LeaseTTL:
			w.lost()
		}
		if err != nil {
			return fmt.Errorf("stage watcher: renew lease: %w", err)
		}
		return nil
	}
	got, err := lease.Acquire(ctx, w.rdb, w.keys[0], w.cfg.Name, w.cfg.LeaseTTL)
	if err != nil {
		return fmt.Errorf("stage watcher: lease: %w", err)
	}
	if got {
		w.leader, w.renewed, w.counts = true, now, nil
		w.m.leader.Set(1)
		w.log.Info("stage watcher lease taken; watching the stages")
	}
	return nil
}

func (w *StageWatcher) lost() {
	if w.leader {
		w.log.Warn("stage watcher lease lost; stopped watching")
	}
	w.leader, w.counts = false, nil
	w.m.leader.Set(0)
	if w.cfg.Groups != nil {
		w.cfg.Groups.Reset()
	}
}

// release gives the lease back if this watcher holds it.
func (w *StageWatcher) release() {
	if !w.leader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := lease.Release(ctx, w.rdb, w.keys[0], w.cfg.Name); err != nil {
		w.log.Warn("giving the stage watcher lease back failed; it expires by itself", "err", err)
	}
	w.leader, w.counts = false, nil
	w.m.leader.Set(0)
}

// commitScript: KEYS[1] the lease, KEYS[2] the transitions hash; ARGV[1]
// the holder, ARGV[2] the stage, ARGV[3] its last transition as known,
// ARGV[4] the next. -1: not the holder; 0: the last transition is another.
var commitScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local n = redis.call('HGET', KEYS[2], ARGV[2]) or '0'
if n ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
return 1
`)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type watcherMetrics struct {
	leader      prometheus.Gauge
	transitions *prometheus.CounterVec
}

func newWatcherMetrics(reg prometheus.Registerer) *watcherMetrics {
	const ns, sub = "viewpulse", "webhook"
	m := &watcherMetrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "watcher_leader", Help: "1 while this process's stage watcher holds the lease (one process of a deployment does)."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "stage_transitions_total", Help: "stage.live and stage.empty events this process's watcher queued, by type."}, []string{"type"}),
	}
	m.transitions.WithLabelValues(StageLive)
	m.transitions.WithLabelValues(StageEmpty)
	reg.MustRegister(m.leader, m.transitions)
	return m
}
