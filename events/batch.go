package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher groups the script calls of concurrent requests into shared
// pipelines: a few flush loops each take whatever calls are waiting (never
// waiting for more), send them as one pipeline and hand every caller its own
// reply. Under light load a call is a pipeline of one, which its caller sends
// itself while fewer than loops pipelines are in flight, so nothing waits for
// company; under heavy load one round trip and one Redis read carry many
// calls. Each call is still its own atomic script, answered only after its
// own write is done.
//
// With a flush delay (SetFlushDelay; rueidis's MaxFlushDelay is the same
// idea) pipelines start at most once per delay while calls keep coming. A
// call within the delay of the last start joins the group that starts next:
// its first call leads it, waits out the delay and sends the group as one
// pipeline; the others wait for their replies as they would for Redis's. A
// call after a quiet spell of the delay goes at once. Fewer, fuller
// pipelines cost ingest and Redis one write, one read and one wake-up each
// instead of one per call, for at most the delay more latency per call, and
// only under load.
type batcher struct {
	rdb   redis.UniversalClient
	calls chan *call
	// slots holds a token per pipeline in flight, loops' and callers' own
	// alike: at most cap(slots) at once.
	slots chan struct{}
	max   int
	once  sync.Once
	loops int
	// timeout bounds a pipeline whose callers set no deadline.
	timeout time.Duration

	// delay is the flush delay (0: none). mu guards next, the group that
	// starts next (nil: none), and last, when the latest pipeline started.
	delay time.Duration
	mu    sync.Mutex
	next  *group
	last  time.Time
}

// group is the calls of one delayed pipeline, in the order they came.
type group struct{ calls []*call }

type call struct {
	ctx    context.Context
	script *redis.Script
	cmd    []any // the EVALSHA command (runCmd)
	res    any
	err    error
	done   chan struct{}
	// state moves once from queued to sent (flush put it in a pipeline) or
	// to abandoned (its caller gave up first): whichever comes first wins,
	// so a caller that gave up knows whether its call can still reach Redis.
	state atomic.Int32
}

const (
	queued int32 = iota
	sent
	abandoned
)

func newBatcher(rdb redis.UniversalClient, loops, max int) *batcher {
	return &batcher{rdb: rdb, slots: make(chan struct{}, loops), calls: make(chan *call, loops*max), max: max, loops: loops, timeout: 5 * time.Second}
}

// run sends one script call through a shared pipeline and waits for its
// reply or ctx's end. A call given up before it was sent is never sent; one
// given up after it was sent returns an error wrapping ErrOutcomeUnknown (the
// scripts refuse to run past their deadline, so it ran, if at all, before
// the caller gave up). So is a call whose connection failed after sending.
func (b *batcher) run(ctx context.Context, script *redis.Script, keys []string, args []any) (any, error) {
	cmd := make([]any, 0, 3+len(keys)+len(args))
	cmd = append(cmd, "evalsha", script.Hash(), len(keys))
	for _, k := range keys {
		cmd = append(cmd, k)
	}
	return b.runCmd(ctx, script, append(cmd, args...))
}

// runCmd is run of a whole EVALSHA command of script: "evalsha", the
// script's hash, the number of keys, the keys, the arguments.
func (b *batcher) runCmd(ctx context.Context, script *redis.Script, cmd []any) (any, error) {
	c := &call{ctx: ctx, script: script, cmd: cmd, done: make(chan struct{})}
	if b.delay > 0 {
		return b.delayed(c)
	}
	b.once.Do(b.start)
	if len(b.calls) == 0 {
		// Nothing waits for company: while a pipeline slot is free the
		// caller sends its own, sparing two goroutine hand-offs (to a loop
		// and back), most of the cost of a lone call.
		select {
		case b.slots <- struct{}{}:
			one := [1]*call{c}
			b.flush(one[:])
			<-b.slots
			return c.res, c.err
		default:
		}
	}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c.wait()
}

// wait waits for c's reply or its caller's end.
func (c *call) wait() (any, error) {
	select {
	case <-c.done:
		return c.res, c.err
	case <-c.ctx.Done():
		if c.state.CompareAndSwap(queued, abandoned) {
			return nil, c.ctx.Err() // never sent: nothing was recorded
		}
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, c.ctx.Err())
	}
}

// delayed runs c with the flush delay: at once after a quiet spell, else in
// the next group, which c leads when there is none. The leader waits out the
// delay even when its own caller gives up meanwhile (the others' calls
// depend on it; flush skips its own), and its pipeline ends with the latest
// caller's deadline, at most the delay after its own.
func (b *batcher) delayed(c *call) (any, error) {
	b.mu.Lock()
	if g := b.next; g != nil && len(g.calls) < b.max {
		g.calls = append(g.calls, c)
		b.mu.Unlock()
		return c.wait()
	}
	now := time.Now()
	calls := []*call{c}
	if wait := b.delay - now.Sub(b.last); wait > 0 {
		g := &group{calls: append(make([]*call, 0, b.max), c)}
		b.next = g
		b.mu.Unlock()
		time.Sleep(wait)
		b.mu.Lock()
		if b.next == g {
			b.next = nil // no call joins a group taken off next
		}
		b.last = time.Now()
		calls = g.calls
	} else {
		b.last = now
	}
	b.mu.Unlock()
	select {
	case b.slots <- struct{}{}:
		b.flush(calls)
		<-b.slots
		return c.res, c.err
	default:
		// Every pipeline slot is taken (Redis is slow or stuck): the calls
		// wait for one in the background, their callers no longer than
		// their contexts allow.
		go func() {
			b.slots <- struct{}{}
			b.flush(calls)
			<-b.slots
		}()
		return c.wait()
	}
}

func (b *batcher) start() {
	for i := 0; i < b.loops; i++ {
		go b.loop()
	}
}

// loop never ends: the batcher lives as long as its Stream (a process).
func (b *batcher) loop() {
	batch := make([]*call, 0, b.max)
	for c := range b.calls {
		batch = append(batch[:0], c)
	fill:
		for len(batch) < b.max {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		b.slots <- struct{}{}
		b.flush(batch)
		<-b.slots
	}
}

func (b *batcher) flush(batch []*call) {
	// A call whose caller already gave up (and answered 503: "nothing was
	// recorded") must not run later, when Redis is back.
	live := batch[:0]
	for _, c := range batch {
		if c.ctx.Err() != nil || !c.state.CompareAndSwap(queued, sent) {
			c.err = c.ctx.Err()
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	batch = live
	if len(batch) == 0 {
		return
	}
	// The pipeline ends with the latest caller deadline, so no caller is cut
	// short by another's.
	var deadline time.Time
	for _, c := range batch {
		if d, ok := c.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(b.timeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmds := make([]*redis.Cmd, len(batch))
	pipe := b.rdb.Pipeline()
	for i, c := range batch {
		cmds[i] = redis.NewCmd(ctx, c.cmd...)
		_ = pipe.Process(ctx, cmds[i])
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range batch {
		c.res, c.err = cmds[i].Result()
		if c.err != nil && redis.HasErrorPrefix(c.err, "NOSCRIPT") {
			// First use after a Redis restart or SCRIPT FLUSH: load it (on
			// every node of a cluster) and send the call again.
			if c.err = c.script.Load(ctx, b.rdb).Err(); c.err == nil {
				c.res, c.err = b.rdb.Do(ctx, c.cmd...).Result()
			}
		}
		if c.err != nil && mayHaveRun(c.err) {
			c.err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, c.err)
		}
		close(c.done)
	}
}

// mayHaveRun reports whether a call that failed with err may have been
// executed by Redis anyway: it may have been written to a connection whose
// answer never came. A reply from Redis (an error reply included), a failed
// dial and a pool that gave no connection mean it did not run, or ran and
// said so. Anything else is taken as "may have run": go-redis retries and
// reports a context error after a send as readily as before one, so a
// timeout proves nothing either way.
func mayHaveRun(err error) bool {
	var reply redis.Error
	var op *net.OpError
	switch {
	case errors.As(err, &reply),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted), errors.Is(err, redis.ErrClosed),
		errors.As(err, &op) && op.Op == "dial":
		return false
	}
	return true
}
