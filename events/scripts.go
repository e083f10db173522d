package events

import "github.com/redis/go-redis/v9"

// Every script takes KEYS = {stream, stages} and
// ARGV[1..5] = {key base, now ms, heartbeat timeout ms, stream bound (0 =
// none), deadline ms on Redis's clock (0 = none)}; the per-stage keys are
// built from the base inside the script, and share the base's hash tag. Each
// script is one atomic step: the event is appended and the live state changed
// together, or neither.
const luaCommon = `
local stream, stages = KEYS[1], KEYS[2]
local base = ARGV[1]
local now = tonumber(ARGV[2])
local timeout = tonumber(ARGV[3])
local bound = tonumber(ARGV[4])
local deadline = tonumber(ARGV[5])

-- A step that reaches Redis after its caller gave up (Redis was asleep, the
-- pipeline queued behind a slow command) must not run: the caller has
-- answered 503 already. Redis's own clock decides; ingest passes its
-- deadline less a margin for clock skew (Stream.deadline).
local function check_deadline()
  if deadline <= 0 then return end
  local t = redis.call('TIME')
  local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if rnow > deadline then
    return redis.error_reply('DEADLINE the call arrived ' .. (rnow - deadline) .. ' ms after its deadline')
  end
end

local function present_key(stage) return base .. 'present:' .. stage end
local function members_key(stage) return base .. 'members:' .. stage end
-- session records live in 1,024 small hashes picked by the session ID's last
-- two characters (random), so each stays compactly encoded (Keys.Sessions).
local function sessions_key(sid) return base .. 'sessions:' .. string.sub(sid, -2) end

-- Stage ARNs are interned: a session record names its stage by a small
-- number, which keeps the live state per viewer small (README, "Memory").
local function stage_id(stage)
  local id = redis.call('HGET', base .. 'stageids', stage)
  if not id then
    id = tostring(redis.call('INCR', base .. 'stageseq'))
    redis.call('HSET', base .. 'stageids', stage, id)
    redis.call('HSET', base .. 'stagenames', id, stage)
  end
  return id
end

-- The join time of a session is the time part of its ULID (ingest mints the
-- ID with the join's own time), so the record need not hold it.
local crockford = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
local function ulid_ms(sid)
  local n = 0
  for i = 1, 10 do
    n = n * 32 + string.find(crockford, string.sub(sid, i, i), 1, true) - 1
  end
  return string.format('%d', n)
end

-- a session record is "stage_id|user"; the user ID is last because it is the
-- only part that may contain '|'. Returns joined (Unix ms), stage, user,
-- stage id.
local function parse(sid, rec)
  local id, u = string.match(rec, '^(%d+)|(.*)$')
  return ulid_ms(sid), redis.call('HGET', base .. 'stagenames', id), u, id
end

-- Every open session of a stage has its entry in the stage's members hash
-- (a join writes both; only close removes either), so an empty members hash
-- means no session record names the stage's interned id any more: release
-- it, so that stages that come and go leave nothing behind.
local function release_stage(stage, id)
  if redis.call('EXISTS', members_key(stage)) == 0 then
    redis.call('HDEL', base .. 'stageids', stage)
    redis.call('HDEL', base .. 'stagenames', id)
  end
end

-- The bound is on the backlog: entries some consumer group has not yet
-- acknowledged (lag + pending of the furthest-behind group), or the whole
-- stream when no group reads it. Acknowledged entries kept for replay do not
-- count. XLEN is the fast path: a stream shorter than the bound cannot hold
-- a backlog that long.
local function check_bound()
  if bound <= 0 then return end
  local len = redis.call('XLEN', stream)
  if len < bound then return end
  local backlog = len
  local groups = redis.call('XINFO', 'GROUPS', stream)
  if #groups > 0 then
    backlog = 0
    for _, g in ipairs(groups) do
      local lag, pending = nil, 0
      for i = 1, #g, 2 do
        if g[i] == 'lag' then lag = g[i+1] end
        if g[i] == 'pending' then pending = g[i+1] end
      end
      -- lag is unknown after deletions inside the unread range: assume the worst
      if not lag then lag = len end
      if lag + pending > backlog then backlog = lag + pending end
    end
  end
  if backlog >= bound then
    return redis.error_reply('BACKPRESSURE ' .. backlog .. ' entries not yet projected')
  end
end

local function xadd(fields)
  return redis.call('XADD', stream, '*', unpack(fields))
end

local function event(typ, sid, user, stage, participant, at)
  local f = {'v', '1', 'type', typ, 'session', sid, 'user', user, 'stage', stage}
  if participant ~= nil and participant ~= '' then
    f[#f+1] = 'participant'; f[#f+1] = participant
  end
  f[#f+1] = 'at'; f[#f+1] = tostring(at)
  return f
end

local function live_count(stage)
  return redis.call('ZCOUNT', present_key(stage), '(' .. (now - timeout), '+inf')
end

-- close appends the closing event of session sid and removes it from the live
-- state. typ is 'leave' or 'timeout'; last_seen is when the viewer was last
-- known present (the left_at of the row).
local function close(sid, rec, typ, last_seen)
  local joined, stage, user, id = parse(sid, rec)
  local f = event(typ, sid, user, stage, nil, now)
  f[#f+1] = 'joined'; f[#f+1] = joined
  f[#f+1] = 'last_seen'; f[#f+1] = tostring(last_seen)
  xadd(f)
  redis.call('HDEL', sessions_key(sid), sid)
  local mk = members_key(stage)
  if redis.call('HGET', mk, user) == sid then
    redis.call('HDEL', mk, user)
    redis.call('ZREM', present_key(stage), user)
  end
  release_stage(stage, id)
  return stage
end

-- last_seen of a session, or nil if its user is not in the presence set.
local function seen(stage, user)
  local s = redis.call('ZSCORE', present_key(stage), user)
  if s then return tonumber(s) end
  return nil
end
`

// joinScript refuses a new viewer (not a present one) with STAGE_FULL when the
// stage's capacity (hash <base>capacity) is reached. ARGV[6..13] = session ID
// to mint, user, stage, participant, ua, ip, country, how long a per-minute
// peak is kept after its hour ends (ms). Returns {session ID, live count,
// rejoined 0|1}.
var joinScript = redis.NewScript(luaCommon + `
local sid, user, stage, participant = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ua, ip, country, peak_keep = ARGV[10], ARGV[11], ARGV[12], tonumber(ARGV[13])
local late = check_deadline(); if late then return late end
local err = check_bound(); if err then return err end
local pk, mk = present_key(stage), members_key(stage)

local rejoined = 0
local old = redis.call('HGET', mk, user)
local old_rec = old and redis.call('HGET', sessions_key(old), old)
local last = old_rec and seen(stage, user)
if last and last > now - timeout then
  sid = old
  rejoined = 1
else
  -- a configured capacity refuses new viewers, never present ones.
  local cap = tonumber(redis.call('HGET', base .. 'capacity', stage) or '0')
  if cap > 0 and live_count(stage) >= cap then
    return redis.error_reply('STAGE_FULL stage holds ' .. cap .. ' viewers')
  end
  if old_rec then
    -- present once, silent past the timeout, not yet swept: close that
    -- session at its last sign of life before opening a new one.
    local joined = parse(old, old_rec)
    close(old, old_rec, 'timeout', last or tonumber(joined))
  end
end

local f = event('join', sid, user, stage, (rejoined == 0) and participant or nil, now)
if rejoined == 0 then
  redis.call('HSET', sessions_key(sid), sid, stage_id(stage) .. '|' .. user)
  redis.call('HSET', mk, user, sid)
  if ua ~= '' then f[#f+1] = 'ua'; f[#f+1] = ua end
  if ip ~= '' then f[#f+1] = 'ip'; f[#f+1] = ip end
  if country ~= '' then f[#f+1] = 'country'; f[#f+1] = country end
end
xadd(f)
redis.call('ZADD', pk, 'GT', now, user)
redis.call('ZADD', stages, 'GT', now, stage)

local count = live_count(stage)
-- one small hash per stage and hour, minute -> highest count (Keys.Peak)
-- It is read at the next snapshot boundary and then deleted by the
-- snapshotter; the expiry (the hour's end plus the snapshot interval and a
-- grace, counted from now on ingest's clock) only bounds what a stopped
-- snapshotter leaves behind.
local hour = math.floor(now / 3600000)
local peak = base .. 'peak:' .. stage .. ':' .. hour
local minute = tostring(math.floor(now / 60000))
local prev = tonumber(redis.call('HGET', peak, minute) or '0')
if count > prev then
  redis.call('HSET', peak, minute, count)
  redis.call('PEXPIRE', peak, (hour + 1) * 3600000 + peak_keep - now)
end
return {sid, count, rejoined}
`)

// heartbeatScript: ARGV[6] = session ID, ARGV[7] = record interval ms (0:
// every heartbeat is appended). Returns {1, live count} when the session is
// present, {0, 0} when it is unknown or expired (an expired one is closed with
// a timeout event at its last heartbeat).
//
// Presence is refreshed by every heartbeat; the stream gets a heartbeat event
// only when this heartbeat falls in a later record interval of the session
// (counted from its join, so sessions do not all record in the same moment)
// than the previous sign of life. The closing event carries the
// exact last heartbeat anyway, so the history loses nothing; the stream, the
// projector and PostgreSQL see one heartbeat per interval instead of one per
// 30 s. A heartbeat that appends nothing is never refused for back-pressure.
var heartbeatScript = redis.NewScript(luaCommon + `
local sid, every = ARGV[6], tonumber(ARGV[7])
local late = check_deadline(); if late then return late end
local rec = redis.call('HGET', sessions_key(sid), sid)
if not rec then return {0, 0} end
local joined, stage, user = parse(sid, rec)
local last = seen(stage, user)
-- (a record exists only for the user's current session: a join closes the
-- old one before it writes a new one)
if not last or last <= now - timeout then
  close(sid, rec, 'timeout', last or tonumber(joined))
  return {0, 0}
end
local j = tonumber(joined)
if every <= 0 or math.floor((now - j) / every) ~= math.floor((last - j) / every) then
  local err = check_bound(); if err then return err end
  xadd(event('heartbeat', sid, user, stage, nil, now))
end
redis.call('ZADD', present_key(stage), 'GT', now, user)
redis.call('ZADD', stages, 'GT', now, stage)
return {1, live_count(stage)}
`)

// leaveScript: ARGV[6] = session ID. Returns {1, live count} when it closed
// the session, {0, 0} when there was nothing to close (repeat-safe). A session
// already silent past the timeout is closed as a timeout at its last heartbeat.
var leaveScript = redis.NewScript(luaCommon + `
local sid = ARGV[6]
local late = check_deadline(); if late then return late end
local rec = redis.call('HGET', sessions_key(sid), sid)
if not rec then return {0, 0} end
local joined, stage, user = parse(sid, rec)
local last = seen(stage, user)
if not last or last <= now - timeout then
  close(sid, rec, 'timeout', last or tonumber(joined))
else
  close(sid, rec, 'leave', now)
end
return {1, live_count(stage)}
`)

// sweepScript: ARGV[6..8] = stage, at most this many viewers, forget the stage
// when it is empty and idle since this Unix ms. Closes viewers of the stage
// silent past the timeout with timeout events at their last heartbeat.
// Returns the number closed.
var sweepScript = redis.NewScript(luaCommon + `
local stage, limit, idle_before = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local pk, mk = present_key(stage), members_key(stage)
local silent = redis.call('ZRANGE', pk, '-inf', now - timeout, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
local closed = 0
for i = 1, #silent, 2 do
  local user, last = silent[i], tonumber(silent[i+1])
  local sid = redis.call('HGET', mk, user)
  local rec = sid and redis.call('HGET', sessions_key(sid), sid)
  if rec then
    close(sid, rec, 'timeout', last)
    closed = closed + 1
  else
    -- presence without a session record cannot come from these scripts;
    -- drop it rather than count a ghost.
    redis.call('ZREM', pk, user)
    if sid then redis.call('HDEL', mk, user) end
    local id = redis.call('HGET', base .. 'stageids', stage)
    if id then release_stage(stage, id) end
  end
end
if redis.call('ZCARD', pk) == 0 then
  local last = redis.call('ZSCORE', stages, stage)
  if last and tonumber(last) < idle_before then
    redis.call('ZREM', stages, stage)
  end
end
return closed
`)
