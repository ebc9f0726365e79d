"""The Lua scripts of ``RedisChallengeStore``: each check-and-count step runs as one script.

Redis runs a script without interleaving any other command, so a script is
the atomic step the ``ChallengeStore`` port asks for, across replicas. Every
script touches the keys of one NIR, or of one client address, only, all under
one hash tag, so they also run on Redis Cluster.

Times are integer microseconds since the epoch, computed by the caller from
its ``now``. Lua numbers are doubles: comparing such values is exact (they are
below 2**53), but printing them is not (``tostring`` keeps 14 digits), so the
scripts store and return the caller's strings and never numbers they computed.
Durations given to ``PEXPIRE`` are milliseconds.

The scripts that look at locks get the lock hashes a request is subject to
first, their number in ``ARGV[1]`` where it varies; a lock hash holds
``expire``, microseconds, or ``never`` for a suspension (no TTL: an advisor
lifts it). Attempts in flight are a sorted set of tickets (``pending``); a
settled wrong entry moves its ticket to the failures of the window and of
the day, and adds one to the consecutive count of its scope (the ceiling).

A login hash keeps the NIR's login generation of its creation (``''``: the NIR
had none); the scripts that use a login get the NIR's generation key after it
and treat a login whose generation is no longer the NIR's as gone.
"""

from __future__ import annotations

_LIVE_LOCKS = """
local function live_locks(now, first, last)
  local found = {}
  for i = first, last do
    local expire = redis.call('HGET', KEYS[i], 'expire')
    if expire and (expire == 'never' or tonumber(expire) > now) then
      found[#found + 1] = {i, expire}
    end
  end
  return found
end
"""

_ENDED = """
local function ended(login, generation)
  return (redis.call('HGET', login, 'generation') or '') ~= (redis.call('GET', generation) or '')
end
"""

ACTIVE_LOCKS = (
    _LIVE_LOCKS
    + """
-- KEYS: the lock hashes to look at. ARGV: now.
return live_locks(tonumber(ARGV[1]), 1, #KEYS)
"""
)

LOCKS_AND_GENERATION = (
    _LIVE_LOCKS
    + """
-- KEYS: the lock hashes, then the generation. ARGV: now.
-- Returns {locks, generation ('' if the NIR has none)}.
return {live_locks(tonumber(ARGV[1]), 1, #KEYS - 1), redis.call('GET', KEYS[#KEYS]) or ''}
"""
)

END_LOGINS = """
-- KEYS: generation. ARGV: the new generation, ms to keep it at least.
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(ttl, tonumber(ARGV[2])))
return 1
"""

CLAIM_ATTEMPT = (
    _LIVE_LOCKS
    + """
-- KEYS: n locks, failures (kind, scope), pending (kind, scope).
-- ARGV: n, now, failures since, pending since, ticket, limit, pending ms.
-- Returns {0, locks} (refused), {2} (in progress: in flight make up the limit) or {1}.
local n = tonumber(ARGV[1])
local locks = live_locks(tonumber(ARGV[2]), 1, n)
if #locks > 0 then return {0, locks} end
local failures, pending = KEYS[n + 1], KEYS[n + 2]
redis.call('ZREMRANGEBYSCORE', failures, '-inf', ARGV[3])
redis.call('ZREMRANGEBYSCORE', pending, '-inf', ARGV[4])
local settled, limit = redis.call('ZCARD', failures), tonumber(ARGV[6])
if settled < limit and settled + redis.call('ZCARD', pending) >= limit then return {2} end
redis.call('ZADD', pending, ARGV[2], ARGV[5])
redis.call('PEXPIRE', pending, ARGV[7])
return {1}
"""
)

SETTLE_FAILURE = """
-- KEYS: failures, pending, daily, ceiling count, lock (kind, scope), suspension (scope).
-- ARGV: now, ticket, failures since, window ms, limit, lock expire, lock ms,
--       day since, daily limit, daily expire, daily ms, ceiling, ceiling ms.
-- Returns {failures, ''}, {failures, 'never'} (suspended) or {failures, lock expire}.
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local failures = redis.call('ZCARD', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[11])
local daily = redis.call('ZCARD', KEYS[3])
local consecutive = redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[13])
if consecutive >= tonumber(ARGV[12]) then
  redis.call('HSET', KEYS[6], 'expire', 'never')
  redis.call('PERSIST', KEYS[6])
  return {failures, 'never'}
end
local expire, ms = nil, nil
if failures >= tonumber(ARGV[5]) then expire, ms = ARGV[6], ARGV[7] end
if daily >= tonumber(ARGV[9]) and (not expire or tonumber(ARGV[10]) > tonumber(expire)) then
  expire, ms = ARGV[10], ARGV[11]
end
if not expire then return {failures, ''} end
local current = redis.call('HGET', KEYS[5], 'expire')
if current and current ~= 'never' and tonumber(current) >= tonumber(expire) then
  return {failures, current}
end
redis.call('HSET', KEYS[5], 'expire', expire)
redis.call('PEXPIRE', KEYS[5], ms)
return {failures, expire}
"""

SETTLE_SUCCESS = """
-- KEYS: pending, failures of the attempt; then, if the login is complete, the password
-- failures of its scope, the code failures, the quota and the ceiling count of its scope.
-- ARGV: ticket, '1' if the login is complete.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if ARGV[2] == '1' then redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6]) end
return 1
"""

RESERVE_CODE = (
    _LIVE_LOCKS
    + """
-- KEYS: n locks, the quota lock, quota.
-- ARGV: n, now, forget at or before, ticket, limit, window ms, lock expire, lock ms.
-- Returns {0, sent, locks} (refused), {2, sent} (quota lock just set) or {1, sent}.
local n = tonumber(ARGV[1])
local lock, quota = KEYS[n + 1], KEYS[n + 2]
local locks = live_locks(tonumber(ARGV[2]), 1, n)
if #locks > 0 then
  return {0, redis.call('ZCOUNT', quota, '(' .. ARGV[3], '+inf'), locks}
end
redis.call('ZREMRANGEBYSCORE', quota, '-inf', ARGV[3])
local sent = redis.call('ZCARD', quota)
if sent >= tonumber(ARGV[5]) then
  redis.call('HSET', lock, 'expire', ARGV[7])
  redis.call('PEXPIRE', lock, ARGV[8])
  return {2, sent}
end
redis.call('ZADD', quota, ARGV[2], ARGV[4])
redis.call('PEXPIRE', quota, ARGV[6])
return {1, sent + 1}
"""
)

STATUS = (
    _LIVE_LOCKS
    + """
-- KEYS: n locks, password failures (every scope, n + 1 .. #KEYS - 2), code failures, quota.
-- ARGV: n, now, '(' .. failures since, '(' .. requests since. Read only.
local n = tonumber(ARGV[1])
local passwords = 0
for i = n + 1, #KEYS - 2 do
  passwords = passwords + redis.call('ZCOUNT', KEYS[i], ARGV[3], '+inf')
end
return {
  live_locks(tonumber(ARGV[2]), 1, n),
  passwords,
  redis.call('ZCOUNT', KEYS[#KEYS - 1], ARGV[3], '+inf'),
  redis.call('ZCOUNT', KEYS[#KEYS], ARGV[4], '+inf'),
}
"""
)

CREATE_LOGIN = """
-- KEYS: login, generation. ARGV: ttl ms, the generation read before, then field, value...
-- Returns 0 (the NIR's logins were ended since: nothing stored) or 1.
local generation = redis.call('GET', KEYS[2]) or ''
if generation ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'generation', generation, unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if generation ~= '' and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])  -- the generation outlives its logins
end
return 1
"""

GET_LOGIN = (
    _ENDED
    + """
-- KEYS: login, generation. Returns the login's fields and values, none if it was ended.
if ended(KEYS[1], KEYS[2]) then return {} end
return redis.call('HGETALL', KEYS[1])
"""
)

SET_CODE = (
    _ENDED
    + """
-- KEYS: login, generation. ARGV: code digest, code expire.
if redis.call('EXISTS', KEYS[1]) == 0 or ended(KEYS[1], KEYS[2]) then return 0 end
redis.call('HSET', KEYS[1], 'code_digest', ARGV[1], 'code_expire', ARGV[2])
return 1
"""
)

RELEASE_CODE = """
-- KEYS: [quota], [login]. ARGV: ticket ('' = no quota key), code digest.
local login = KEYS[1]
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  login = KEYS[2]
end
if login and redis.call('HGET', login, 'code_digest') == ARGV[2] then
  redis.call('HDEL', login, 'code_digest', 'code_expire')
end
return 1
"""

CONSUME_LOGIN = (
    _ENDED
    + """
-- KEYS: login, generation. ARGV: code digest. Returns 1 if this call deleted the login.
if not ended(KEYS[1], KEYS[2]) and redis.call('HGET', KEYS[1], 'code_digest') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)

COUNT_CLIENT_FAILURE = """
-- KEYS: the client's throttle (its end), the client's failures.
-- ARGV: now, forget at or before, member, limit, window ms, throttle end, throttle ms.
-- Returns 0 (throttled: nothing counted), 1 (counted) or 2 (counted, and the throttle set).
local ends = redis.call('GET', KEYS[1])
if ends and tonumber(ends) > tonumber(ARGV[1]) then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[1], ARGV[6], 'PX', ARGV[7])
  return 2
end
return 1
"""

READ_STATE = """
-- KEYS: the state keys of one ref (``adopt``). Read only.
-- Returns, for each key that exists: {index, type, pttl, n, values...}: a sorted set's
-- members and scores, a lock's expire, a string's value (a count, a throttle's end).
local found = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  local values = nil
  if kind == 'zset' then
    values = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  elseif kind == 'hash' then
    values = {redis.call('HGET', key, 'expire') or ''}
  elseif kind == 'string' then
    values = {redis.call('GET', key)}
  end
  if values then
    local entry = {i, kind, redis.call('PTTL', key), #values}
    for _, value in ipairs(values) do entry[#entry + 1] = value end
    found[#found + 1] = entry
  end
end
return found
"""

MERGE_STATE = """
-- KEYS: the state keys of the current ref, in READ_STATE's order.
-- ARGV: READ_STATE's entries, flattened. Sorted sets are united; a lock keeps the later
-- expire ('never' wins); a string the larger number. A key keeps the longer TTL, none
-- if either had none (TTLs only collect garbage).
local i = 1
while i <= #ARGV do
  local key, kind = KEYS[tonumber(ARGV[i])], ARGV[i + 1]
  local pttl, n, first = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), i + 4
  local before = redis.call('PTTL', key)
  if kind == 'zset' then
    for j = first, first + n - 1, 2 do redis.call('ZADD', key, ARGV[j + 1], ARGV[j]) end
  elseif kind == 'hash' then
    local incoming, current = ARGV[first], redis.call('HGET', key, 'expire')
    if incoming ~= '' and current ~= 'never' and (
        incoming == 'never' or not current or tonumber(incoming) > tonumber(current)) then
      redis.call('HSET', key, 'expire', incoming)
    end
  elseif kind == 'string' then
    local current = redis.call('GET', key)
    if not current or tonumber(ARGV[first]) > tonumber(current) then
      redis.call('SET', key, ARGV[first])
    end
  end
  if pttl == -1 or before == -1 then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, math.max(pttl, before, 1))
  end
  i = first + n
end
return 1
"""

SCRIPTS = {
    "ACTIVE_LOCKS": ACTIVE_LOCKS,
    "LOCKS_AND_GENERATION": LOCKS_AND_GENERATION,
    "END_LOGINS": END_LOGINS,
    "CLAIM_ATTEMPT": CLAIM_ATTEMPT,
    "SETTLE_FAILURE": SETTLE_FAILURE,
    "SETTLE_SUCCESS": SETTLE_SUCCESS,
    "RESERVE_CODE": RESERVE_CODE,
    "STATUS": STATUS,
    "CREATE_LOGIN": CREATE_LOGIN,
    "GET_LOGIN": GET_LOGIN,
    "SET_CODE": SET_CODE,
    "RELEASE_CODE": RELEASE_CODE,
    "CONSUME_LOGIN": CONSUME_LOGIN,
    "COUNT_CLIENT_FAILURE": COUNT_CLIENT_FAILURE,
    "READ_STATE": READ_STATE,
    "MERGE_STATE": MERGE_STATE,
}
