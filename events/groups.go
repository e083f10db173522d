package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stage groups in Redis. A group is its master and the stages naming it; it
// lives whole in the master's partition (a grouped stage is placed by its
// master's ARN, Stream.KeysOf), so that one script sees every stage of it:
// the group's member set (Keys.Group), and per stage its presence, capacity
// and reserved seats (Keys.Reserved).

// Errors of the group steps.
var (
	// ErrStageHasViewers: a stage with open sessions cannot join or leave a
	// group (its live state would be split between two partitions).
	ErrStageHasViewers = errors.New("stage has open sessions")
	// ErrGroupFull: no stage of the group has room for one more viewer.
	ErrGroupFull = errors.New("group is full")
	// ErrGroupNotFound: the ARN is no group's master in Redis.
	ErrGroupNotFound = errors.New("group not found")
)

// RefreshPlacement reads which stages are placed by a master
// (Keys.Placement) into the stream's cache, which KeysOf uses.
func (s *Stream) RefreshPlacement(ctx context.Context) error {
	m, err := s.rdb.HGetAll(ctx, s.parts[0].Placement()).Result()
	if err != nil {
		return fmt.Errorf("read placement: %w", err)
	}
	s.placement.Store(&m)
	return nil
}

// WatchPlacement refreshes the placement at once and then every `every`
// until ctx ends, for processes that route stages of several partitions: a
// group change made by another process is seen within `every` (a join that
// arrives sooner is refused by the partition the stage left and routed
// again, Join). It logs nothing; errors are retried at the next tick.
func (s *Stream) WatchPlacement(ctx context.Context, every time.Duration) {
	if len(s.parts) == 1 {
		return // one partition: everything is placed there
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		_ = s.RefreshPlacement(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GroupChange is a stage's move between groups: the group it was in and
// the one it is in now, each named by its master ("": none; a master is in
// its own group), and its capacity (0: none).
type GroupChange struct {
	Stage    string
	From, To string
	Capacity int
}

// place is the ARN a stage in group g (a master's ARN or "") is placed by.
func place(stage, g string) string {
	if g == "" {
		return stage
	}
	return g
}

// Regroup moves c.Stage from group c.From to group c.To in Redis and sets
// its capacity. When its placement changes (it names another master, or
// none, than before) it must have no open session (else ErrStageHasViewers,
// nothing changed): in its old partition it leaves the old group, and if the
// partition changes it is marked moved there (joins routed there by a stale
// placement are sent on) and its stage entry and capacity go; in the new
// partition it joins the new group with its capacity; the placement is
// written last. Each step is atomic and repeat-safe, so a change cut short
// is completed by repeating it (or by SyncGroups at ingest's start).
func (s *Stream) Regroup(ctx context.Context, c GroupChange) error {
	n := len(s.parts)
	oldPlace, newPlace := place(c.Stage, c.From), place(c.Stage, c.To)
	pOld, pNew := PartitionOf(oldPlace, n), PartitionOf(newPlace, n)
	ko, kn := s.parts[pOld], s.parts[pNew]
	check := 0
	if oldPlace != newPlace {
		check = 1
	}
	moveTo := -1
	if pOld != pNew {
		moveTo = pNew
	}
	oldGroup := ko.Group(place(c.Stage, c.From))
	err := leaveGroupScript.Run(ctx, s.rdb,
		[]string{ko.Members(c.Stage), oldGroup, ko.Moved(), ko.Stages(), ko.Capacity(), ko.Present(c.Stage)},
		c.Stage, check, b2i(c.From != ""), moveTo).Err()
	if err != nil {
		if strings.HasPrefix(err.Error(), "HAS_VIEWERS") {
			return ErrStageHasViewers
		}
		return fmt.Errorf("regroup %s: leave: %w", c.Stage, err)
	}
	err = joinGroupScript.Run(ctx, s.rdb, []string{kn.Moved(), kn.Group(newPlace), kn.Capacity()},
		c.Stage, b2i(c.To != ""), c.To, c.Capacity).Err()
	if err != nil {
		return fmt.Errorf("regroup %s: join: %w", c.Stage, err)
	}
	if c.To != "" && c.To != c.Stage {
		err = s.rdb.HSet(ctx, s.parts[0].Placement(), c.Stage, c.To).Err()
	} else {
		err = s.rdb.HDel(ctx, s.parts[0].Placement(), c.Stage).Err()
	}
	if err != nil {
		return fmt.Errorf("regroup %s: placement: %w", c.Stage, err)
	}
	if err := s.indexGroups(ctx, c.From, c.To); err != nil {
		return fmt.Errorf("regroup %s: %w", c.Stage, err)
	}
	return s.RefreshPlacement(ctx)
}

// indexGroups keeps Keys.Groups: the group a stage joined is listed, the
// one it left is no more once it is empty.
func (s *Stream) indexGroups(ctx context.Context, from, to string) error {
	index := s.parts[0].Groups()
	if to != "" {
		if err := s.rdb.SAdd(ctx, index, to).Err(); err != nil {
			return fmt.Errorf("group index: %w", err)
		}
	}
	if from != "" && from != to {
		n, err := s.rdb.SCard(ctx, s.parts[PartitionOf(from, len(s.parts))].Group(from)).Result()
		if err == nil && n == 0 {
			err = s.rdb.SRem(ctx, index, from).Err()
		}
		if err != nil {
			return fmt.Errorf("group index: %w", err)
		}
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// leaveGroupScript: KEYS = members, old group set, moved, stages, capacity,
// present (of the old partition); ARGV = stage, check empty 0|1, in a group
// 0|1, partition moved to (-1: none).
var leaveGroupScript = redis.NewScript(`
local members, group, moved, stages, capacity, present = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local stage, check, grouped, to = ARGV[1], ARGV[2] == '1', ARGV[3] == '1', tonumber(ARGV[4])
if check and redis.call('EXISTS', members) == 1 then
  return redis.error_reply('HAS_VIEWERS the stage has open sessions')
end
if grouped then redis.call('SREM', group, stage) end
if to >= 0 then
  redis.call('HSET', moved, stage, to)
  redis.call('ZREM', stages, stage)
  redis.call('HDEL', capacity, stage)
  redis.call('DEL', present)
end
return 1
`)

// joinGroupScript: KEYS = moved, new group set, capacity (of the new
// partition); ARGV = stage, in a group 0|1, the group's master, capacity.
var joinGroupScript = redis.NewScript(`
local moved, group, capacity = KEYS[1], KEYS[2], KEYS[3]
local stage, grouped, master, cap = ARGV[1], ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
redis.call('HDEL', moved, stage)
if grouped then redis.call('SADD', group, master, stage) end
if cap > 0 then redis.call('HSET', capacity, stage, cap) else redis.call('HDEL', capacity, stage) end
return 1
`)

// Seat is the outcome of an assignment.
type Seat struct {
	Stage      string
	Viewers    int64     // present on that stage now
	MaxViewers int       // its capacity; 0: none
	ExpiresAt  time.Time // when the seat is released unless the user joins; zero when they are present already
}

// Assign gives user a seat in master's group, in one atomic step over every
// stage of the group: the stage where the user is present, or where they
// hold a seat (sticky), else the least-loaded stage with room (present plus
// reserved below its capacity; ties by ARN), reserving the seat for ttl.
// Errors: ErrGroupNotFound, ErrGroupFull.
func (s *Stream) Assign(ctx context.Context, master, user string, ttl time.Duration) (Seat, error) {
	for attempt := 0; ; attempt++ {
		seat, err := s.assign(ctx, master, user, ttl)
		if !errors.Is(err, errStaleGroup) || attempt >= 2 {
			return seat, err
		}
		// the group changed between reading its members and the step
	}
}

var errStaleGroup = errors.New("group changed")

func (s *Stream) assign(ctx context.Context, master, user string, ttl time.Duration) (Seat, error) {
	k := s.parts[PartitionOf(master, len(s.parts))]
	stages, err := s.rdb.SMembers(ctx, k.Group(master)).Result()
	if err != nil {
		return Seat{}, fmt.Errorf("assign: %w", err)
	}
	if len(stages) == 0 {
		return Seat{}, ErrGroupNotFound
	}
	slices.Sort(stages)
	keys := []string{k.Group(master), k.Capacity()}
	for _, st := range stages {
		keys = append(keys, k.Present(st), k.Reserved(st))
	}
	now := s.Now()
	args := []any{now.UnixMilli(), s.timeout.Milliseconds(), ttl.Milliseconds(), user}
	for _, st := range stages {
		args = append(args, st)
	}
	res, err := assignScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		switch msg := err.Error(); {
		case strings.HasPrefix(msg, "STALE"):
			return Seat{}, errStaleGroup
		case strings.HasPrefix(msg, "GROUP_FULL"):
			return Seat{}, ErrGroupFull
		}
		return Seat{}, fmt.Errorf("assign: %w", err)
	}
	seat := Seat{Stage: res[0].(string), Viewers: res[1].(int64), MaxViewers: int(res[2].(int64))}
	if exp := res[3].(int64); exp > 0 {
		seat.ExpiresAt = time.UnixMilli(exp).UTC()
	}
	return seat, nil
}

// assignScript: KEYS = group set, capacity, then per stage (sorted by ARN)
// its presence and reserved seats; ARGV = now, timeout, seat ttl ms, user,
// the stages. Returns {stage, present count, capacity, seat expiry ms (0:
// present already)}.
var assignScript = redis.NewScript(`
local group, capacity = KEYS[1], KEYS[2]
local now, timeout, ttl, user = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local n = #ARGV - 4
if redis.call('SCARD', group) ~= n then return redis.error_reply('STALE group changed') end
local live = '(' .. (now - timeout)
local function present_of(i) return KEYS[1 + 2 * i] end
local function reserved_of(i) return KEYS[2 + 2 * i] end
local stage, count, cap = {}, {}, {}
for i = 1, n do
  stage[i] = ARGV[4 + i]
  if redis.call('SISMEMBER', group, stage[i]) == 0 then return redis.error_reply('STALE group changed') end
  count[i] = redis.call('ZCOUNT', present_of(i), live, '+inf')
  cap[i] = tonumber(redis.call('HGET', capacity, stage[i]) or '0')
end
-- sticky: present on a stage of the group, or holding a seat there
for i = 1, n do
  local seen = redis.call('ZSCORE', present_of(i), user)
  if seen and tonumber(seen) > now - timeout then return {stage[i], count[i], cap[i], 0} end
end
for i = 1, n do
  local exp = redis.call('ZSCORE', reserved_of(i), user)
  if exp and tonumber(exp) > now then return {stage[i], count[i], cap[i], tonumber(exp)} end
end
local best, best_load = nil, nil
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', reserved_of(i), '-inf', now)
  local load = count[i] + redis.call('ZCARD', reserved_of(i))
  if (cap[i] == 0 or load < cap[i]) and (not best or load < best_load) then
    best, best_load = i, load
  end
end
if not best then return redis.error_reply('GROUP_FULL no stage of the group has room') end
local exp = now + ttl
redis.call('ZADD', reserved_of(best), exp, user)
redis.call('PEXPIRE', reserved_of(best), ttl)
return {stage[best], count[best], cap[best], exp}
`)

// GroupStageCount is one stage of a group with its live count and capacity.
type GroupStageCount struct {
	Stage      string `json:"stage_arn"`
	Viewers    int64  `json:"viewers"`
	MaxViewers int    `json:"max_viewers"`
	Reserved   int64  `json:"reserved"`
}

// GroupCount is a group's live state: distinct users present on any of its
// stages (a user on two counts once), and its stages.
type GroupCount struct {
	Master  string            `json:"master_stage_arn"`
	Viewers int64             `json:"viewers"`
	Stages  []GroupStageCount `json:"stages"`
}

// GroupOf reads the live state of master's group: its members from Redis,
// then their counts in one atomic read. Errors: ErrGroupNotFound.
func (s *Stream) GroupOf(ctx context.Context, master string) (GroupCount, error) {
	k := s.parts[PartitionOf(master, len(s.parts))]
	stages, err := s.rdb.SMembers(ctx, k.Group(master)).Result()
	if err != nil {
		return GroupCount{}, fmt.Errorf("group %s: %w", master, err)
	}
	if len(stages) == 0 {
		return GroupCount{}, ErrGroupNotFound
	}
	slices.Sort(stages)
	return s.Group(ctx, master, stages)
}

// Groups reads the live state of every group (Keys.Groups), by master.
func (s *Stream) Groups(ctx context.Context) ([]GroupCount, error) {
	masters, err := s.rdb.SMembers(ctx, s.parts[0].Groups()).Result()
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	slices.Sort(masters)
	out := make([]GroupCount, 0, len(masters))
	for _, m := range masters {
		g, err := s.GroupOf(ctx, m)
		if errors.Is(err, ErrGroupNotFound) {
			continue // emptied since the index was read
		}
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// Group reads the live state of master's group, stages, in one atomic
// read of the master's partition.
func (s *Stream) Group(ctx context.Context, master string, stages []string) (GroupCount, error) {
	k := s.parts[PartitionOf(master, len(s.parts))]
	keys := []string{k.Capacity()}
	for _, st := range stages {
		keys = append(keys, k.Present(st), k.Reserved(st))
	}
	args := []any{s.Now().UnixMilli(), s.timeout.Milliseconds()}
	for _, st := range stages {
		args = append(args, st)
	}
	res, err := groupCountScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return GroupCount{}, fmt.Errorf("group %s: %w", master, err)
	}
	g := GroupCount{Master: master, Viewers: res[0].(int64)}
	for i, st := range stages {
		row := res[1+i].([]any)
		g.Stages = append(g.Stages, GroupStageCount{Stage: st, Viewers: row[0].(int64), MaxViewers: int(row[1].(int64)), Reserved: row[2].(int64)})
	}
	return g, nil
}

// groupCountScript: KEYS = capacity, then per stage presence and reserved;
// ARGV = now, timeout, the stages. Returns {distinct present users,
// {count, capacity, reserved} per stage}.
var groupCountScript = redis.NewScript(`
local capacity = KEYS[1]
local now, timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local live = '(' .. (now - timeout)
local users, distinct, out = {}, 0, {0}
for i = 1, #ARGV - 2 do
  local present = redis.call('ZRANGE', KEYS[2 * i], live, '+inf', 'BYSCORE')
  for _, u in ipairs(present) do
    if not users[u] then users[u] = true; distinct = distinct + 1 end
  end
  local cap = tonumber(redis.call('HGET', capacity, ARGV[2 + i]) or '0')
  out[1 + i] = {#present, cap, redis.call('ZCOUNT', KEYS[2 * i + 1], '(' .. now, '+inf')}
end
out[1] = distinct
return out
`)

// SyncGroups makes the groups and placement in Redis those of groups
// (master -> its stages, the master included) and capacities (stage ->
// capacity): ingest runs it at start, so a group change cut short, or a
// Redis that lost its state, is repaired. It adds missing members, removes
// members no longer configured, writes the placement of every grouped stage
// and clears the moved marks of configured stages where they now live.
func (s *Stream) SyncGroups(ctx context.Context, groups map[string][]string) error {
	want := map[string]string{}
	for master, stages := range groups {
		k := s.parts[PartitionOf(master, len(s.parts))]
		have, err := s.rdb.SMembers(ctx, k.Group(master)).Result()
		if err != nil {
			return fmt.Errorf("sync groups: %w", err)
		}
		for _, st := range have {
			if !slices.Contains(stages, st) {
				s.rdb.SRem(ctx, k.Group(master), st)
			}
		}
		members := make([]any, len(stages))
		for i, st := range stages {
			members[i] = st
			if st != master {
				want[st] = master
			}
			s.rdb.HDel(ctx, k.Moved(), st)
		}
		if err := s.rdb.SAdd(ctx, k.Group(master), members...).Err(); err != nil {
			return fmt.Errorf("sync groups: %w", err)
		}
	}
	index := s.parts[0].Groups()
	listed, err := s.rdb.SMembers(ctx, index).Result()
	if err != nil {
		return fmt.Errorf("sync groups: %w", err)
	}
	for _, m := range listed {
		if _, ok := groups[m]; !ok {
			s.rdb.SRem(ctx, index, m)
			s.rdb.Del(ctx, s.parts[PartitionOf(m, len(s.parts))].Group(m))
		}
	}
	for m := range groups {
		if err := s.rdb.SAdd(ctx, index, m).Err(); err != nil {
			return fmt.Errorf("sync groups: %w", err)
		}
	}
	have, err := s.rdb.HGetAll(ctx, s.parts[0].Placement()).Result()
	if err != nil {
		return fmt.Errorf("sync placement: %w", err)
	}
	for st, m := range want {
		if have[st] != m {
			if err := s.rdb.HSet(ctx, s.parts[0].Placement(), st, m).Err(); err != nil {
				return fmt.Errorf("sync placement: %w", err)
			}
		}
	}
	for st := range have {
		if _, ok := want[st]; !ok {
			s.rdb.HDel(ctx, s.parts[0].Placement(), st)
		}
	}
	return s.RefreshPlacement(ctx)
}
