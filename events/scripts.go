package events

import "github.com/redis/go-redis/v9"

// Every script takes KEYS[1..6] = {stream, stages, stagenames, present,
// members, sessions} of one stage (and the session bucket of the step's
// user or session) in one partition, and ARGV[1..5] = {StageHash, now ms,
// heartbeat timeout ms, stream bound (0 = none), deadline ms on Redis's
// clock (0 = none)}; join and sweep take more keys after these. Every key a
// script touches is one of its KEYS: they all carry the partition's hash tag,
// so on Redis Cluster a step runs on the one node holding the partition. Each
// script is one atomic step: the event is appended and the live state changed
// together, or neither.
const luaCommon = `
local stream, stages, names, pk, mk, sk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local h = ARGV[1]
local now = tonumber(ARGV[2])
-- now as ingest wrote it: passed to Redis as is, never formatted back
local now_s = ARGV[2]
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

-- Every open session of the stage has its entry in the stage's members hash
-- (a join writes both; only close removes either), so an empty members hash
-- means no session names the stage's hash any more: release its name, so
-- that stages that come and go leave nothing behind.
local function release_stage()
  if redis.call('EXISTS', mk) == 0 then
    redis.call('HDEL', names, h)
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
  f[#f+1] = 'at'; f[#f+1] = (at == now) and now_s or tostring(at)
  return f
end

local function live_count()
  return redis.call('ZCOUNT', pk, '(' .. (now - timeout), '+inf')
end

-- close appends the closing event of session sid (of user, its record in
-- hash bucket) and removes it from the live state. typ is 'leave' or
-- 'timeout'; last_seen is when the viewer was last known present (the
-- left_at of the row).
local function close(sid, user, bucket, typ, last_seen)
  local stage = redis.call('HGET', names, h) or ''
  local f = event(typ, sid, user, stage, nil, now)
  f[#f+1] = 'joined'; f[#f+1] = ulid_ms(sid)
  f[#f+1] = 'last_seen'; f[#f+1] = tostring(last_seen)
  xadd(f)
  redis.call('HDEL', bucket, sid)
  if redis.call('HGET', mk, user) == sid then
    redis.call('HDEL', mk, user)
    redis.call('ZREM', pk, user)
  end
  release_stage()
  return stage
end

-- last_seen of the user, or nil if they are not in the presence set.
local function seen(user)
  local s = redis.call('ZSCORE', pk, user)
  if s then return tonumber(s) end
  return nil
end
`

// joinScript refuses a new viewer (not a present one) with STAGE_FULL when the
// stage's capacity (KEYS[7], a hash of the partition) is reached, and any
// join with STAGE_COLLISION while another ARN of the same StageHash has open
// sessions in the partition. KEYS[8] = the stage's peak hash of now's hour
// (Keys.Peak), KEYS[9] = the partition's moved hash (a stage that moved to
// another partition is refused with STAGE_MOVED <partition>, for the caller
// to route it again; not MOVED, which cluster clients take for a slot
// redirection), KEYS[10] = the stage's reserved seats (Keys.Reserved): a
// user holding a seat is admitted and the seat consumed; the seats others
// hold count against the capacity. ARGV[6..13] = session ID to mint, user, stage ARN,
// participant, ua, ip, country, how long a per-minute peak is kept after its
// hour ends (ms). The session bucket KEYS[6] is the user's (UserBucket), so
// the user's earlier session of the stage is in it too. Returns {session ID,
// live count, rejoined 0|1}.
var joinScript = redis.NewScript(luaCommon + `
local capacity, peak, moved, reserved = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local sid, user, stage, participant = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ua, ip, country, peak_keep = ARGV[10], ARGV[11], ARGV[12], tonumber(ARGV[13])
local late = check_deadline(); if late then return late end
local to = redis.call('HGET', moved, stage)
if to then return redis.error_reply('STAGE_MOVED ' .. to) end
local err = check_bound(); if err then return err end
local named = redis.call('HGET', names, h)
if named and named ~= stage then
  return redis.error_reply('STAGE_COLLISION another stage of this partition shares the hash ' .. h)
end

local rejoined = 0
-- A new viewer (the common join) takes the stage's members entry at once:
-- one scan of the members hash, not a lookup and then a write. The entry is
-- removed again if the stage is full.
local fresh = redis.call('HSETNX', mk, user, sid) == 1
local old = (not fresh) and redis.call('HGET', mk, user)
-- the old session's routing part (partition, bucket, stage hash) is the new
-- one's: same stage, same user; anything else was not written by this layout
local old_rec = old and string.sub(old, 27) == string.sub(sid, 27) and redis.call('HGET', sk, old)
local last = old_rec and seen(user)
if last and last > now - timeout then
  sid = old
  rejoined = 1
else
  -- a configured capacity refuses new viewers, never present ones; seats
  -- assigned to others and not yet used count as taken, a seat of the
  -- user's own admits them.
  local cap = tonumber(redis.call('HGET', capacity, stage) or '0')
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', reserved, '-inf', now)
    if not redis.call('ZSCORE', reserved, user) and live_count() + redis.call('ZCARD', reserved) >= cap then
      if fresh then redis.call('HDEL', mk, user) end
      return redis.error_reply('STAGE_FULL stage holds ' .. cap .. ' viewers')
    end
  end
  if old_rec then
    -- present once, silent past the timeout, not yet swept: close that
    -- session at its last sign of life before opening a new one.
    close(old, user, sk, 'timeout', last or tonumber(ulid_ms(old)))
    named = nil -- close may have released the stage's name
  end
end

local f = event('join', sid, user, stage, (rejoined == 0) and participant or nil, now)
if rejoined == 0 then
  if not named then redis.call('HSET', names, h, stage) end
  redis.call('HSET', sk, sid, user)
  if not fresh then redis.call('HSET', mk, user, sid) end
  if ua ~= '' then f[#f+1] = 'ua'; f[#f+1] = ua end
  if ip ~= '' then f[#f+1] = 'ip'; f[#f+1] = ip end
  if country ~= '' then f[#f+1] = 'country'; f[#f+1] = country end
end
xadd(f)
redis.call('ZADD', pk, 'GT', now_s, user)
redis.call('ZADD', stages, 'GT', now_s, stage)
redis.call('ZREM', reserved, user)

local count = live_count()
-- one small hash per stage and hour, minute -> highest count (Keys.Peak)
-- It is read at the next snapshot boundary and then deleted by the
-- snapshotter; the expiry (the hour's end plus the snapshot interval and a
-- grace, counted from now on ingest's clock) only bounds what a stopped
-- snapshotter leaves behind.
local hour = math.floor(now / 3600000)
local minute = tostring(math.floor(now / 60000))
local prev = redis.call('HGET', peak, minute)
if not prev then
  -- the expiry is one instant for the whole hour's hash: set it with the
  -- first count of each minute, not with every higher one
  redis.call('HSET', peak, minute, count)
  redis.call('PEXPIRE', peak, (hour + 1) * 3600000 + peak_keep - now)
elseif count > tonumber(prev) then
  redis.call('HSET', peak, minute, count)
end
return {sid, count, rejoined}
`)

// heartbeatScript: KEYS[6] is the session ID's bucket; ARGV[6] = session
// ID, ARGV[7] = record interval ms (0: every heartbeat is appended). Returns
// {1, live count, user} when the session is present, {0, 0} when it is unknown or
// expired (an expired one is closed with a timeout event at its last
// heartbeat).
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
local user = redis.call('HGET', sk, sid)
if not user then return {0, 0} end
local joined = tonumber(ulid_ms(sid))
local last = seen(user)
-- (a record exists only for the user's current session: a join closes the
-- old one before it writes a new one)
if not last or last <= now - timeout then
  close(sid, user, sk, 'timeout', last or joined)
  return {0, 0}
end
local stage = redis.call('HGET', names, h) or ''
if every <= 0 or math.floor((now - joined) / every) ~= math.floor((last - joined) / every) then
  local err = check_bound(); if err then return err end
  xadd(event('heartbeat', sid, user, stage, nil, now))
end
redis.call('ZADD', pk, 'GT', now, user)
if stage ~= '' then redis.call('ZADD', stages, 'GT', now, stage) end
return {1, live_count(), user}
`)

// leaveScript: KEYS[6] is the session ID's bucket; ARGV[6] = session ID.
// Returns {1, live count} when it closed the session, {0, 0} when there was
// nothing to close (repeat-safe). A session already silent past the timeout
// is closed as a timeout at its last heartbeat.
var leaveScript = redis.NewScript(luaCommon + `
local sid = ARGV[6]
local late = check_deadline(); if late then return late end
local user = redis.call('HGET', sk, sid)
if not user then return {0, 0} end
local last = seen(user)
if not last or last <= now - timeout then
  close(sid, user, sk, 'timeout', last or tonumber(ulid_ms(sid)))
else
  close(sid, user, sk, 'leave', now)
end
return {1, live_count()}
`)

// sweepScript: KEYS[6..] = session buckets, named by ARGV[9..] (bucket
// characters, in the same order); ARGV[6..8] = at most this many viewers,
// forget the stage when it is empty and idle since this Unix ms, the stage
// ARN. Closes viewers of the stage silent past the timeout with timeout
// events at their last heartbeat, those whose session's bucket it was given
// (Stream.Sweep reads the silent users first and passes their buckets; one
// gone silent since waits for the next sweep). Returns the number closed.
var sweepScript = redis.NewScript(luaCommon + `
local limit, idle_before, stage = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local buckets = {}
for i = 9, #ARGV do buckets[ARGV[i]] = KEYS[i - 3] end
local silent = redis.call('ZRANGE', pk, '-inf', now - timeout, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
local closed = 0
for i = 1, #silent, 2 do
  local user, last = silent[i], tonumber(silent[i+1])
  local sid = redis.call('HGET', mk, user)
  local bucket = sid and buckets[string.sub(sid, 29, 30)]
  local rec = bucket and redis.call('HGET', bucket, sid)
  if rec then
    close(sid, user, bucket, 'timeout', last)
    closed = closed + 1
  elseif bucket or not sid then
    -- presence without a session record cannot come from these scripts;
    -- drop it rather than count a ghost.
    redis.call('ZREM', pk, user)
    if sid then redis.call('HDEL', mk, user) end
    release_stage()
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

// presenceScript is WriteBehind's flush of one partition: KEYS[1] =
// stages, KEYS[2] = stagenames, then KEYS[1+2i], KEYS[2+2i] = the presence
// and members of stage i; ARGV[1..2] = {now ms, heartbeat timeout ms}, then
// per stage: StageHash, n, and n × {user, session ID, heartbeat ms}. A
// presence is written (never lowered) only while the stage's members hash
// still names that session for the user and the user's presence has not
// expired: a closed or expired session is never brought back; its index
// (1-based, within its stage) is returned as gone. Appends nothing: these
// heartbeats record no event. Returns, per stage, {live count, {gone…}}.
var presenceScript = redis.NewScript(`
local stages, names = KEYS[1], KEYS[2]
local now, timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
local a, k = 3, 3
while a <= #ARGV do
  local h, n = ARGV[a], tonumber(ARGV[a+1])
  a = a + 2
  local pk, mk = KEYS[k], KEYS[k+1]
  k = k + 2
  local gone, newest = {}, 0
  for i = 1, n do
    local user, sid, ts = ARGV[a], ARGV[a+1], tonumber(ARGV[a+2])
    a = a + 3
    local s = redis.call('ZSCORE', pk, user)
    if s and tonumber(s) > now - timeout and redis.call('HGET', mk, user) == sid then
      redis.call('ZADD', pk, 'GT', ts, user)
      if ts > newest then newest = ts end
    else
      gone[#gone+1] = i
    end
  end
  if newest > 0 then
    local stage = redis.call('HGET', names, h)
    if stage then redis.call('ZADD', stages, 'GT', newest, stage) end
  end
  out[#out+1] = redis.call('ZCOUNT', pk, '(' .. (now - timeout), '+inf')
  out[#out+1] = gone
end
return out
`)
