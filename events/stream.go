package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrSessionNotFound is returned by Heartbeat for a session that is unknown,
// closed or silent past the timeout: the client has to join again.
var ErrSessionNotFound = errors.New("session not found")

// ErrBackpressure is returned by writes while the backlog not yet projected
// reaches MaxLen: the projector is behind, and nothing was recorded.
var ErrBackpressure = errors.New("stream is full")

// ErrStageFull is returned by Join when the stage's capacity is reached and
// the user is not already present.
var ErrStageFull = errors.New("stage is full")

// ErrOutcomeUnknown is wrapped by the error of a player write that was sent to
// Redis but whose answer never came in time (Redis asleep or unreachable
// after the send). The step ran before the caller's deadline or not at all:
// the scripts refuse to run later than that (check_deadline). Repeating the
// write is safe: a join by a present user continues the session, heartbeat
// and leave are repeat-safe. Every other error of a write means that nothing
// was recorded.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// ErrTooLate is returned by a write that reached Redis after its deadline
// and was refused there: nothing was recorded.
var ErrTooLate = errors.New("arrived after its deadline")

// ClockSkew is the margin taken off a caller's deadline before the scripts
// compare it with Redis's clock, for clocks of ingest and Redis that differ
// by up to that much (NTP keeps them within a few ms).
const ClockSkew = 50 * time.Millisecond

// ErrStageCollision is returned by Join when another stage of the same
// partition with open sessions shares the stage's StageHash (about one
// chance in 10^5 at a million live stages): nothing was recorded, and the
// join succeeds once the other stage's sessions are closed.
var ErrStageCollision = errors.New("stage hash collision")

// ErrStageMoving is returned by Join while the stage is being moved into or
// out of a group placed in another partition: nothing was recorded; retry
// in a moment.
var ErrStageMoving = errors.New("stage is moving to another partition")

// errMoved: the step found the stage moved to another partition.
var errMoved = errors.New("stage moved")

// Stream is one deployment's event streams (one per partition) and live
// presence state in Redis.
type Stream struct {
	rdb    redis.UniversalClient
	prefix string
	parts  []Keys // parts[p] = PartitionKeys(prefix, p)
	// fixed[p] = the first three script keys of partition p (command),
	// then its capacity and moved hashes (the join's), named once rather
	// than on every step; fixedAny[p] the same, boxed once for the
	// commands' argument lists
	fixed    [][5]string
	fixedAny [][5]any
	// placement maps the stages that name a master to it (Keys.Placement),
	// read by RefreshPlacement; nil until then.
	placement atomic.Pointer[map[string]string]
	timeout   time.Duration
	// MaxLen, when above zero, bounds the backlog: player writes are refused
	// with ErrBackpressure while some consumer group has that many entries
	// not yet acknowledged (the whole stream counts when no group reads it).
	MaxLen int64
	// RecordEvery, when above zero, thins heartbeats in the stream: presence
	// is refreshed by every heartbeat, but a heartbeat event is appended only
	// when a heartbeat falls in a later RecordEvery-long period of the session
	// (counted from its join) than its previous sign of life (heartbeatScript).
	RecordEvery time.Duration
	// PeakKeep is how long after its hour has ended a per-minute peak stays
	// in Redis when no snapshotter consumed it: at least the snapshot
	// interval plus its grace. Default DefaultPeakKeep.
	PeakKeep time.Duration
	// Now is the clock; tests replace it.
	Now   func() time.Time
	batch *batcher
}

// DefaultPeakKeep suits the default 5-minute snapshot interval: the
// interval, its grace of at most a minute, and a minute more.
const DefaultPeakKeep = 7 * time.Minute

// NewStream returns the stream of the single-partition deployment whose
// keys start with prefix. A viewer is present while their last join or
// heartbeat is younger than timeout.
func NewStream(rdb redis.UniversalClient, prefix string, timeout time.Duration) *Stream {
	return NewPartitionedStream(rdb, prefix, timeout, 1)
}

// NewPartitionedStream returns the stream of a deployment of n partitions
// (1 to MaxPartitions; out of range is taken as 1): a stage belongs to
// partition PartitionOf(stage, n). Check n against the deployment with
// CheckPartitions first.
func NewPartitionedStream(rdb redis.UniversalClient, prefix string, timeout time.Duration, n int) *Stream {
	if n < 1 || n > MaxPartitions {
		n = 1
	}
	parts := make([]Keys, n)
	fixed := make([][5]string, n)
	fixedAny := make([][5]any, n)
	for p := range parts {
		k := PartitionKeys(prefix, p)
		parts[p], fixed[p] = k, [5]string{k.Stream(), k.Stages(), k.StageNames(), k.Capacity(), k.Moved()}
		for i, key := range fixed[p] {
			fixedAny[p][i] = key
		}
	}
	return &Stream{rdb: rdb, prefix: prefix, parts: parts, fixed: fixed, fixedAny: fixedAny, timeout: timeout, PeakKeep: DefaultPeakKeep,
		Now: time.Now, batch: newBatcher(rdb, 8, 64)}
}

// SetFlushDelay sets the least time between two pipelines of script calls
// while calls keep coming (0, the default: none; batch.go). Call it before
// the stream's first step.
func (s *Stream) SetFlushDelay(d time.Duration) { s.batch.delay = d }

// Keys returns the key names of partition 0: with one partition, every key
// the stream uses.
func (s *Stream) Keys() Keys { return s.parts[0] }

// Partitions is the number of partitions.
func (s *Stream) Partitions() int { return len(s.parts) }

// PartitionKeys returns the key names of partition p, which must be below
// Partitions.
func (s *Stream) PartitionKeys(p int) Keys { return s.parts[p] }

// Prefix is the deployment's key prefix.
func (s *Stream) Prefix() string { return s.prefix }

// KeysOf returns the key names of stage's partition: its group master's
// (by the placement last read), or its own.
func (s *Stream) KeysOf(stage string) Keys {
	if len(s.parts) == 1 {
		return s.parts[0]
	}
	return s.parts[PartitionOf(s.placeOf(stage), len(s.parts))]
}

func (s *Stream) placeOf(stage string) string {
	if m := s.placement.Load(); m != nil {
		if master, ok := (*m)[stage]; ok {
			return master
		}
	}
	return stage
}

// Client returns the Redis client.
func (s *Stream) Client() redis.UniversalClient { return s.rdb }

// Timeout is the heartbeat timeout.
func (s *Stream) Timeout() time.Duration { return s.timeout }

// JoinRequest is what a player's join carries.
type JoinRequest struct {
	Stage, User, Participant string
	UA, IP, Country          string
}

// JoinResult says which session the viewer is in and the stage's live count.
type JoinResult struct {
	Session  string
	Viewers  int64
	Rejoined bool
}

// Join appends a join event and makes the user present in the stage, in one
// step. A user already present continues their session (Rejoined). A user
// whose earlier session went silent past the timeout has it closed with a
// timeout event first. Errors: ErrBackpressure, ErrStageFull, ErrTooLate,
// ErrOutcomeUnknown (wrapped), or Redis's own (nothing recorded).
func (s *Stream) Join(ctx context.Context, r JoinRequest) (JoinResult, error) {
	now := s.Now()
	h, bucket := StageHash(r.Stage), UserBucket(r.User)
	var res []any
	var err error
	for attempt := 0; ; attempt++ {
		k := s.KeysOf(r.Stage)
		f := &s.fixedAny[k.part]
		cmd := append(s.command(joinScript, 10, 8, k, h, bucket), f[3], k.peak(h, now), f[4], k.reserved(h))
		cmd = append(s.common(ctx, cmd, h, now, s.MaxLen),
			// The ULID's time is the join's: the Lua steps read the join time
			// back from the session ID instead of storing it.
			newSessionID(now, k.part, bucket, h),
			r.User, r.Stage, r.Participant, r.UA, r.IP, r.Country, s.PeakKeep.Milliseconds())
		res, err = s.run(ctx, joinScript, cmd)
		if !errors.Is(err, errMoved) || attempt > 0 {
			break
		}
		// the stage joined or left a group since this process last read
		// the placement: read it again and go where it says
		if err := s.RefreshPlacement(ctx); err != nil {
			return JoinResult{}, fmt.Errorf("join: %w", err)
		}
	}
	if errors.Is(err, errMoved) {
		err = ErrStageMoving
	}
	if err != nil {
		return JoinResult{}, fmt.Errorf("join: %w", err)
	}
	return JoinResult{Session: res[0].(string), Viewers: res[1].(int64), Rejoined: res[2].(int64) == 1}, nil
}

// Heartbeat appends a heartbeat event and refreshes the session's presence,
// returning the stage's live count. Errors: ErrSessionNotFound,
// ErrBackpressure, and those of Join.
func (s *Stream) Heartbeat(ctx context.Context, session string) (int64, error) {
	r, err := s.HeartbeatStep(ctx, session)
	return r.Viewers, err
}

// HeartbeatResult is what a heartbeat step found: the stage's live count,
// and the session's user (for WriteBehind.Learn).
type HeartbeatResult struct {
	Viewers int64
	User    string
}

// HeartbeatStep is Heartbeat, also returning the session's user.
func (s *Stream) HeartbeatStep(ctx context.Context, session string) (HeartbeatResult, error) {
	ref, ok := s.sessionRef(session)
	if !ok {
		return HeartbeatResult{}, ErrSessionNotFound
	}
	cmd := s.common(ctx, s.command(heartbeatScript, 6, 2, s.parts[ref.Partition], ref.Stage, ref.Bucket), ref.Stage, s.Now(), s.MaxLen)
	res, err := s.run(ctx, heartbeatScript, append(cmd, session, s.RecordEvery.Milliseconds()))
	if err != nil {
		return HeartbeatResult{}, fmt.Errorf("heartbeat: %w", err)
	}
	if res[0].(int64) == 0 {
		return HeartbeatResult{}, ErrSessionNotFound
	}
	user, _ := res[2].(string)
	return HeartbeatResult{Viewers: res[1].(int64), User: user}, nil
}

// Leave closes the session with a leave event (or a timeout event, when it was
// already silent past the timeout). Leaving a session that is not open does
// nothing and reports closed=false. Errors: ErrTooLate, ErrOutcomeUnknown
// (wrapped), or Redis's own.
func (s *Stream) Leave(ctx context.Context, session string) (closed bool, err error) {
	ref, ok := s.sessionRef(session)
	if !ok {
		return false, nil
	}
	cmd := s.common(ctx, s.command(leaveScript, 6, 1, s.parts[ref.Partition], ref.Stage, ref.Bucket), ref.Stage, s.Now(), 0)
	res, err := s.run(ctx, leaveScript, append(cmd, session))
	if err != nil {
		return false, fmt.Errorf("leave: %w", err)
	}
	return res[0].(int64) == 1, nil
}

// Sweep closes, with timeout events, up to limit viewers of stage who have
// been silent past the timeout, and forgets the stage once it is empty and
// has seen no event since idleBefore. It returns how many it closed. Two
// sweepers never close one session twice: each step is atomic.
//
// The silent users are read first, and the step is given the session
// buckets of those users (every key it touches is named in advance); a
// viewer gone silent in between waits for the next sweep.
func (s *Stream) Sweep(ctx context.Context, stage string, limit int, idleBefore time.Time) (int, error) {
	k, h := s.KeysOf(stage), StageHash(stage)
	now := s.Now()
	users, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: k.present(h), Start: "-inf", Stop: strconv.FormatInt(now.UnixMilli()-s.timeout.Milliseconds(), 10),
		ByScore: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return 0, fmt.Errorf("sweep %s: %w", stage, err)
	}
	f := &s.fixed[k.part]
	keys := []string{f[0], f[1], f[2], k.present(h), k.members(h)}
	args := []any{h, now.UnixMilli(), s.timeout.Milliseconds(), 0, 0, limit, idleBefore.UnixMilli(), stage}
	seen := map[string]bool{}
	for _, u := range users {
		if b := UserBucket(u); !seen[b] {
			seen[b] = true
			keys = append(keys, k.SessionBucket(b))
			args = append(args, b)
		}
	}
	n, err := sweepScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("sweep %s: %w", stage, err)
	}
	return n, nil
}

// command starts the EVALSHA command of a step of script on stage h of
// partition k: the script's hash, its number of keys nkeys, and KEYS[1..6]
// of every script (scripts.go), the partition's stream, stages and stage
// names, the stage's presence and members, and the session bucket; room is
// left for the step's other keys and ARGV[1..5] (common), then more
// arguments. The arguments are boxed here once, not again by go-redis.
func (s *Stream) command(script *redis.Script, nkeys, more int, k Keys, h, bucket string) []any {
	f := &s.fixedAny[k.part]
	cmd := make([]any, 0, 3+nkeys+5+more)
	return append(cmd, "evalsha", script.Hash(), nkeys, f[0], f[1], f[2], k.present(h), k.members(h), k.SessionBucket(bucket))
}

// common appends ARGV[1..5] of every script to cmd: the stage hash, now,
// the heartbeat timeout, the stream bound and ctx's deadline.
func (s *Stream) common(ctx context.Context, cmd []any, h string, now time.Time, bound int64) []any {
	return append(cmd, h, now.UnixMilli(), s.timeout.Milliseconds(), bound, deadline(ctx))
}

// sessionRef is the parsed session ID sid; ok is false when it is no
// session ID of this deployment.
func (s *Stream) sessionRef(sid string) (ref SessionRef, ok bool) {
	ref, err := ParseSessionID(sid)
	if err != nil || ref.Partition >= len(s.parts) {
		return SessionRef{}, false
	}
	return ref, true
}

// run runs the EVALSHA command cmd of script (command) through the shared
// pipelines and maps the scripts' own errors.
func (s *Stream) run(ctx context.Context, script *redis.Script, cmd []any) ([]any, error) {
	reply, err := s.batch.runCmd(ctx, script, cmd)
	res, _ := reply.([]any)
	if err != nil {
		switch msg := err.Error(); {
		case strings.HasPrefix(msg, "BACKPRESSURE"):
			return nil, ErrBackpressure
		case strings.HasPrefix(msg, "STAGE_FULL"):
			return nil, ErrStageFull
		case strings.HasPrefix(msg, "STAGE_COLLISION"):
			return nil, ErrStageCollision
		case strings.HasPrefix(msg, "STAGE_MOVED "):
			return nil, errMoved
		case strings.HasPrefix(msg, "DEADLINE"):
			return nil, fmt.Errorf("%w: %s", ErrTooLate, msg)
		}
		return nil, err
	}
	return res, nil
}

// deadline is the latest time, on Redis's clock in Unix ms, at which a
// script of ctx may still run: ctx's deadline less ClockSkew; 0 (none) when
// ctx has no deadline.
func deadline(ctx context.Context) int64 {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(1, d.Add(-ClockSkew).UnixMilli())
}

// RunScript runs script through the shared pipelines of the player writes
// (batch.go): for another step of the same requests, such as their rate
// limit, so that it shares round trips with them. Errors: those of a
// pipelined call (ErrOutcomeUnknown wrapped when sent and unanswered), or
// the script's own.
func (s *Stream) RunScript(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error) {
	return s.batch.run(ctx, script, keys, args)
}

// SetCapacity sets the most viewers stage admits (0 or less: no limit).
// Joins check it inside their atomic step.
func (s *Stream) SetCapacity(ctx context.Context, stage string, max int) error {
	var err error
	if max > 0 {
		err = s.rdb.HSet(ctx, s.KeysOf(stage).Capacity(), stage, max).Err()
	} else {
		err = s.rdb.HDel(ctx, s.KeysOf(stage).Capacity(), stage).Err()
	}
	if err != nil {
		return fmt.Errorf("set capacity %s: %w", stage, err)
	}
	return nil
}

// OpenSessions counts the sessions open now (present or silent but not yet
// swept), in one pipeline over the session buckets of every partition (on a
// cluster, one round trip per node).
func (s *Stream) OpenSessions(ctx context.Context) (int64, error) {
	var cmds []*redis.IntCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range s.parts {
			for _, b := range k.AllSessions() {
				cmds = append(cmds, p.HLen(ctx, b))
			}
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("open sessions: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// Viewer is one present user of a stage.
type Viewer struct {
	User     string    `json:"user_id"`
	LastSeen time.Time `json:"last_seen"`
}

// Count returns the number of distinct users present in stage now.
func (s *Stream) Count(ctx context.Context, stage string) (int64, error) {
	n, err := s.rdb.ZCount(ctx, s.KeysOf(stage).Present(stage), s.presentMin(), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", stage, err)
	}
	return n, nil
}

// Present lists the users present in stage now, most recently seen first, at
// most limit of them (0: all).
func (s *Stream) Present(ctx context.Context, stage string, limit int64) ([]Viewer, error) {
	zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key: s.KeysOf(stage).Present(stage), Start: "+inf", Stop: s.presentMin(),
		ByScore: true, Rev: true, Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("present %s: %w", stage, err)
	}
	out := make([]Viewer, len(zs))
	for i, z := range zs {
		out[i] = Viewer{User: z.Member.(string), LastSeen: time.UnixMilli(int64(z.Score)).UTC()}
	}
	return out, nil
}

// StageCount is a stage with live state and its live count.
type StageCount struct {
	Stage        string    `json:"stage_arn"`
	Viewers      int64     `json:"viewers"`
	LastActivity time.Time `json:"last_activity"`
}

// Stages lists the stages that saw an event since `since`, with their live
// counts, partition after partition: one pipeline for the stage lists of
// every partition and one for the counts (on a cluster, a round trip per
// node each).
func (s *Stream) Stages(ctx context.Context, since time.Time) ([]StageCount, error) {
	lists := make([]*redis.ZSliceCmd, len(s.parts))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range s.parts {
			lists[i] = p.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
				Key: k.Stages(), Start: strconv.FormatInt(since.UnixMilli(), 10), Stop: "+inf", ByScore: true,
			})
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("stages: %w", err)
	}
	var out []StageCount
	var keys []string
	for i, l := range lists {
		for _, z := range l.Val() {
			stage := z.Member.(string)
			out = append(out, StageCount{Stage: stage, LastActivity: time.UnixMilli(int64(z.Score)).UTC()})
			keys = append(keys, s.parts[i].Present(stage))
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	min := s.presentMin()
	cmds := make([]*redis.IntCmd, len(keys))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			cmds[i] = p.ZCount(ctx, key, min, "+inf")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("stage counts: %w", err)
	}
	for i, c := range cmds {
		out[i].Viewers = c.Val()
	}
	return out, nil
}

// Peak returns the highest live count stage reached in the minutes from
// `from` up to, not including, `to` (0 when no join was seen there), in one
// round trip.
func (s *Stream) Peak(ctx context.Context, stage string, from, to time.Time) (int64, error) {
	order, fields := s.peakFields(stage, from, to, false)
	if len(order) == 0 {
		return 0, nil
	}
	cmds := make([]*redis.SliceCmd, len(order))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range order {
			cmds[i] = p.HMGet(ctx, key, fields[key]...)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("peak %s: %w", stage, err)
	}
	var peak int64
	for _, c := range cmds {
		for _, v := range c.Val() {
			if str, ok := v.(string); ok {
				if n, err := strconv.ParseInt(str, 10, 64); err == nil && n > peak {
					peak = n
				}
			}
		}
	}
	return peak, nil
}

// ForgetPeaks deletes the per-minute peaks of stages for the minutes that
// lie wholly between from and to, in one round trip: the snapshotter calls it
// once the rows of boundary to are written, so a peak lives until it is used
// rather than until its expiry. A minute that straddles to stays for the
// next interval.
func (s *Stream) ForgetPeaks(ctx context.Context, stages []string, from, to time.Time) error {
	if len(stages) == 0 {
		return nil
	}
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, stage := range stages {
			order, fields := s.peakFields(stage, from, to, true)
			for _, key := range order {
				p.HDel(ctx, key, fields[key]...)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("forget peaks: %w", err)
	}
	return nil
}

// peakFields groups the minute fields of [from, to) by their hour key, in
// time order; whole keeps only minutes that end by to.
func (s *Stream) peakFields(stage string, from, to time.Time, whole bool) ([]string, map[string][]string) {
	fields := map[string][]string{} // hour key -> minute fields
	var order []string
	for t := from.Truncate(time.Minute); t.Before(to); t = t.Add(time.Minute) {
		if whole && t.Add(time.Minute).After(to) {
			break
		}
		key := s.KeysOf(stage).Peak(stage, t)
		if _, ok := fields[key]; !ok {
			order = append(order, key)
		}
		fields[key] = append(fields[key], PeakField(t))
	}
	return order, fields
}

func (s *Stream) presentMin() string {
	return "(" + strconv.FormatInt(s.Now().UnixMilli()-s.timeout.Milliseconds(), 10)
}
