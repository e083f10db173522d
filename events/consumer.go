package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Consumer is one member of a consumer group of a deployment's event
// stream: the one owner of the Redis side of consuming it. It reads (its own
// pending entries first after a start or a failure, then entries abandoned
// by other members, then new ones), acknowledges, dead-letters, trims and
// reports the group's backlog. What is done with the entries (the projector
// folds them into PostgreSQL) is the caller's.
type Consumer struct {
	cfg  ConsumerConfig
	rdb  redis.UniversalClient
	keys Keys

	recovering  bool      // next read is of this consumer's own pending entries
	claimCursor string    // XAUTOCLAIM scan position
	lastClaim   time.Time // when the last full XAUTOCLAIM scan ended
}

// ConsumerConfig tunes a Consumer; zero durations and sizes take the
// defaults of NewConsumer.
type ConsumerConfig struct {
	Group string // the consumer group, created from the stream's start if missing
	Name  string // this consumer's name within the group; required
	// BatchSize is the most entries one Next returns.
	BatchSize int
	// BatchWait is how long Next may wait for a batch to fill up after its
	// first new entry arrived; zero takes what the stream holds.
	BatchWait time.Duration
	// Block bounds each blocking read; a blocked read does not see ctx's
	// cancellation, so it must stay short. Default 1s.
	Block time.Duration
	// ClaimMinIdle is how long an entry must have been pending on another
	// consumer before this one claims it. Default 30s.
	ClaimMinIdle time.Duration
	// ClaimEvery is how often to look for such entries; zero: every Next.
	ClaimEvery time.Duration
	// Now is the clock of the claim cadence; default time.Now.
	Now func() time.Time
	// Redelivered and Deleted, when set, are told how many entries were read
	// again (own pending entries, claimed ones) and how many pending entries
	// were found deleted from the stream (trimmed or XDEL'd: never handled).
	Redelivered, Deleted func(n int)
}

// DeadLetterMaxLen bounds the dead-letter stream (approximately).
const DeadLetterMaxLen = 100_000

// NewConsumer returns the consumer cfg.Name of cfg.Group on keys' stream.
// Call Init before Next.
func NewConsumer(rdb redis.UniversalClient, keys Keys, cfg ConsumerConfig) *Consumer {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50_000
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Second
	}
	if cfg.ClaimMinIdle <= 0 {
		cfg.ClaimMinIdle = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	noop := func(int) {}
	if cfg.Redelivered == nil {
		cfg.Redelivered = noop
	}
	if cfg.Deleted == nil {
		cfg.Deleted = noop
	}
	return &Consumer{cfg: cfg, rdb: rdb, keys: keys, recovering: true, claimCursor: "0-0"}
}

// Group is the consumer group's name.
func (c *Consumer) Group() string { return c.cfg.Group }

// Init creates the consumer group if it is missing, positioned at the
// stream's start (and the stream with it), so that nothing written before the
// first consumer started is skipped.
func (c *Consumer) Init(ctx context.Context) error {
	err := c.rdb.XGroupCreateMkStream(ctx, c.keys.Stream(), c.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %s: %w", c.cfg.Group, err)
	}
	return nil
}

// TakeOver makes every entry pending in the group on any consumer this
// one's (XAUTOCLAIM with no minimum idle time, IDs only) and makes the next
// Next start with them: for a consumer that has just been given the stream
// to itself (a projector's partition lease), whose previous reader is dead
// or has given it up. It returns how many entries it took.
func (c *Consumer) TakeOver(ctx context.Context) (int, error) {
	taken, cursor := 0, "0-0"
	for {
		ids, next, err := c.rdb.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{
			Stream: c.keys.Stream(), Group: c.cfg.Group, Consumer: c.cfg.Name,
			MinIdle: 0, Start: cursor, Count: int64(c.cfg.BatchSize),
		}).Result()
		if err != nil {
			return taken, fmt.Errorf("take over pending entries: %w", err)
		}
		taken += len(ids)
		if next == "0-0" || next == "" {
			break
		}
		cursor = next
	}
	c.recovering = true
	return taken, nil
}

// Recover makes the next Next start again from this consumer's own pending
// entries: call it after a batch failed, so that it is retried first.
func (c *Consumer) Recover() { c.recovering = true }

// Next returns the next batch: own pending entries first after a start or
// Recover, then entries pending on other consumers for longer than
// ClaimMinIdle, then new ones (blocking at most Block). A stream or group
// deleted under it is created again. Pending entries whose content is gone
// from the stream are acknowledged and counted (Deleted), never returned.
func (c *Consumer) Next(ctx context.Context) ([]redis.XMessage, error) {
	msgs, err := c.next(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		if err = c.Init(ctx); err == nil {
			msgs, err = c.next(ctx)
		}
	}
	return msgs, err
}

func (c *Consumer) next(ctx context.Context) ([]redis.XMessage, error) {
	for c.recovering {
		msgs, err := c.read(ctx, "0", c.cfg.BatchSize, -1)
		if err != nil {
			return nil, err
		}
		live, err := c.dropDeleted(ctx, msgs)
		if err != nil {
			return nil, err
		}
		if len(live) > 0 {
			c.cfg.Redelivered(len(live))
			return live, nil
		}
		if len(msgs) == 0 {
			c.recovering = false
		}
	}
	if now := c.cfg.Now(); c.claimCursor != "0-0" || now.Sub(c.lastClaim) >= c.cfg.ClaimEvery {
		msgs, err := c.claim(ctx)
		if err != nil {
			return nil, err
		}
		if c.claimCursor == "0-0" {
			c.lastClaim = now
		}
		if len(msgs) > 0 {
			c.cfg.Redelivered(len(msgs))
			return msgs, nil
		}
	}
	msgs, err := c.read(ctx, ">", c.cfg.BatchSize, c.cfg.Block)
	if err != nil || len(msgs) == 0 || c.cfg.BatchWait <= 0 {
		return msgs, err
	}
	// The blocking read above runs on Redis's clock, so this wait does too.
	deadline := time.Now().Add(c.cfg.BatchWait)
	for len(msgs) < c.cfg.BatchSize {
		wait := time.Until(deadline)
		if wait < time.Millisecond {
			break
		}
		more, err := c.read(ctx, ">", c.cfg.BatchSize-len(msgs), wait)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, more...)
	}
	return msgs, nil
}

// read is XREADGROUP from id ("0": own pending entries, ">": new ones);
// block < 0 does not block.
func (c *Consumer) read(ctx context.Context, id string, count int, block time.Duration) ([]redis.XMessage, error) {
	res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.cfg.Group, Consumer: c.cfg.Name,
		Streams: []string{c.keys.Stream(), id}, Count: int64(count), Block: block,
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
func (c *Consumer) claim(ctx context.Context) ([]redis.XMessage, error) {
	msgs, next, deleted, err := c.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
		Stream: c.keys.Stream(), Group: c.cfg.Group, Consumer: c.cfg.Name,
		MinIdle: c.cfg.ClaimMinIdle, Start: c.claimCursor, Count: int64(c.cfg.BatchSize),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	c.claimCursor = next
	if err := c.forget(ctx, deleted); err != nil {
		return nil, err
	}
	// Redis before 7 reports deleted entries among the claimed ones, empty.
	return c.dropDeleted(ctx, msgs)
}

// dropDeleted acknowledges and counts entries of the own pending list whose
// content is gone from the stream, returning the others.
func (c *Consumer) dropDeleted(ctx context.Context, msgs []redis.XMessage) ([]redis.XMessage, error) {
	var gone []string
	live := msgs[:0:0]
	for _, m := range msgs {
		if len(m.Values) == 0 {
			gone = append(gone, m.ID)
		} else {
			live = append(live, m)
		}
	}
	if err := c.forget(ctx, gone); err != nil {
		return nil, err
	}
	return live, nil
}

// forget acknowledges pending entries that are gone from the stream and
// counts them: they were never handled, so a trim went too far or someone
// ran XDEL.
func (c *Consumer) forget(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := c.Ack(ctx, ids); err != nil {
		return err
	}
	c.cfg.Deleted(len(ids))
	return nil
}

// Ack acknowledges ids in the group.
func (c *Consumer) Ack(ctx context.Context, ids []string) error {
	if err := c.rdb.XAck(ctx, c.keys.Stream(), c.cfg.Group, ids...).Err(); err != nil {
		return fmt.Errorf("ack %d entries: %w", len(ids), err)
	}
	return nil
}

// DeadLetter appends m to the dead-letter stream with the reason and
// acknowledges it, in one MULTI. Fields: id (the original entry ID), reason,
// consumer, and fields (the original fields as a JSON object, so that no
// original name can collide with ours).
func (c *Consumer) DeadLetter(ctx context.Context, m redis.XMessage, reason error) error {
	orig, err := json.Marshal(m.Values)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.ID, err)
	}
	_, err = c.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: c.keys.DeadLetter(), MaxLen: DeadLetterMaxLen, Approx: true,
			Values: []any{"id", m.ID, "reason", reason.Error(), "consumer", c.cfg.Name, "fields", string(orig)},
		})
		pipe.XAck(ctx, c.keys.Stream(), c.cfg.Group, m.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.ID, err)
	}
	return nil
}

// Backlog is a group's XINFO GROUPS figures: entries not yet delivered to
// it (Lag) and delivered but not acknowledged (Pending).
type Backlog struct {
	Lag, Pending int64
}

// Backlog reads the group's lag and pending count. Errors: Redis's own, or
// a missing group.
func (c *Consumer) Backlog(ctx context.Context) (Backlog, error) {
	groups, err := c.rdb.XInfoGroups(ctx, c.keys.Stream()).Result()
	if err != nil {
		return Backlog{}, fmt.Errorf("group info: %w", err)
	}
	for _, g := range groups {
		if g.Name == c.cfg.Group {
			return Backlog{Lag: g.Lag, Pending: g.Pending}, nil
		}
	}
	return Backlog{}, fmt.Errorf("group info: no group %s", c.cfg.Group)
}

// trimScript removes, in one atomic step, the entries of KEYS[1] below the
// oldest entry some consumer group has not acknowledged and below ARGV[1]
// (the retention cutoff, an entry ID). A group's oldest unacknowledged entry
// is its lowest pending ID, or, with nothing pending, the entry after its
// last-delivered-id (every entry up to that one is acknowledged). A stream
// without groups is left alone: nobody has acknowledged anything. Returns
// {entries removed, the MINID used}.
var trimScript = redis.NewScript(`
local stream, minid = KEYS[1], ARGV[1]
if redis.call('EXISTS', stream) == 0 then return {0, ''} end
local function less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  if am ~= bm then return am < bm end
  return as < bs
end
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then return {0, ''} end
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local keep = info['last-delivered-id']
  local pending = redis.call('XPENDING', stream, info['name'])
  if pending[1] > 0 then keep = pending[2] end
  if less(keep, minid) then minid = keep end
end
return {redis.call('XTRIM', stream, 'MINID', minid), minid}
`)

// Trim removes the stream's entries older than keepAfter that every consumer
// group has acknowledged, atomically, and returns how many. It never removes
// an entry some group has not acknowledged.
func (c *Consumer) Trim(ctx context.Context, keepAfter time.Time) (int64, error) {
	cutoff := strconv.FormatInt(max(keepAfter.UnixMilli(), 0), 10) + "-0"
	res, err := trimScript.Run(ctx, c.rdb, []string{c.keys.Stream()}, cutoff).Slice()
	if err != nil {
		return 0, fmt.Errorf("trim %s: %w", c.keys.Stream(), err)
	}
	n, _ := res[0].(int64)
	return n, nil
}

// Truncated reports whether entries were ever removed from keys' stream
// (XTRIM, XDEL, MAXLEN): XINFO STREAM's max-deleted-entry-id is then above
// 0-0. A stream that does not exist is not truncated.
func Truncated(ctx context.Context, rdb redis.UniversalClient, keys Keys) (bool, error) {
	info, err := rdb.XInfoStream(ctx, keys.Stream()).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return false, nil
		}
		return false, fmt.Errorf("stream info: %w", err)
	}
	return info.MaxDeletedEntryID != "" && info.MaxDeletedEntryID != "0-0", nil
}

// Range reads up to count entries of keys' stream after the entry ID after
// ("" or "-": from the start), in order, outside any group: for replay.
func Range(ctx context.Context, rdb redis.UniversalClient, keys Keys, after string, count int) ([]redis.XMessage, error) {
	start := "-"
	if after != "" && after != "-" {
		start = "(" + after
	}
	msgs, err := rdb.XRangeN(ctx, keys.Stream(), start, "+", int64(count)).Result()
	if err != nil {
		return nil, fmt.Errorf("read stream: %w", err)
	}
	return msgs, nil
}
