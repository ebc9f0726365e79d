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

``KEYS[1..3]`` of the scripts that look at locks are always the password,
code and quota lock hashes (``LockKind`` order); a lock hash holds
``expire`` (microseconds) and ``owner`` (the ticket that set it).
"""

from __future__ import annotations

_LIVE_LOCKS = """
local function live_locks(now)
  local found = {}
  for i = 1, 3 do
    local expire = redis.call('HGET', KEYS[i], 'expire')
    if expire and tonumber(expire) > now then
      found[#found + 1] = {i, expire}
    end
  end
  return found
end
"""

ACTIVE_LOCKS = (
    _LIVE_LOCKS
    + """
-- KEYS: 3 locks. ARGV: now.
return live_locks(tonumber(ARGV[1]))
"""
)

CLAIM_ATTEMPT = (
    _LIVE_LOCKS
    + """
-- KEYS: 3 locks, failures of the kind, lock to set.
-- ARGV: now, forget at or before, ticket, limit, window ms, lock expire, lock ms.
-- Returns {0, 0, locks} (refused) or {1, failures, 1 if the lock was set}.
local locks = live_locks(tonumber(ARGV[1]))
if #locks > 0 then return {0, 0, locks} end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
local failures = redis.call('ZCARD', KEYS[4])
if failures >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[5], 'expire', ARGV[6], 'owner', ARGV[3])
  redis.call('PEXPIRE', KEYS[5], ARGV[7])
  return {1, failures, 1}
end
return {1, failures, 0}
"""
)

SETTLE_SUCCESS = """
-- KEYS: 3 locks, password failures, code failures, quota.
-- ARGV: ticket, index in KEYS of the failures to clear, '1' if the login is complete.
for i = 1, 3 do
  if redis.call('HGET', KEYS[i], 'owner') == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
redis.call('DEL', KEYS[tonumber(ARGV[2])])
if ARGV[3] == '1' then redis.call('DEL', KEYS[4], KEYS[5], KEYS[6]) end
return 1
"""

RESERVE_CODE = (
    _LIVE_LOCKS
    + """
-- KEYS: 3 locks, quota.
-- ARGV: now, forget at or before, ticket, limit, window ms, lock expire, lock ms.
-- Returns {0, sent, locks} (refused), {2, sent} (quota lock just set) or {1, sent}.
local locks = live_locks(tonumber(ARGV[1]))
if #locks > 0 then
  return {0, redis.call('ZCOUNT', KEYS[4], '(' .. ARGV[2], '+inf'), locks}
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[2])
local sent = redis.call('ZCARD', KEYS[4])
if sent >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[3], 'expire', ARGV[6], 'owner', 'quota')
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
  return {2, sent}
end
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {1, sent + 1}
"""
)

STATUS = (
    _LIVE_LOCKS
    + """
-- KEYS: 3 locks, password failures, code failures, quota.
-- ARGV: now, '(' .. failures since, '(' .. requests since. Read only.
return {
  live_locks(tonumber(ARGV[1])),
  redis.call('ZCOUNT', KEYS[4], ARGV[2], '+inf'),
  redis.call('ZCOUNT', KEYS[5], ARGV[2], '+inf'),
  redis.call('ZCOUNT', KEYS[6], ARGV[3], '+inf'),
}
"""
)

CREATE_LOGIN = """
-- KEYS: login. ARGV: ttl ms, then field, value, field, value...
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

SET_CODE = """
-- KEYS: login. ARGV: code digest, code expire.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'code_digest', ARGV[1], 'code_expire', ARGV[2])
return 1
"""

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

CONSUME_LOGIN = """
-- KEYS: login. ARGV: code digest. Returns 1 if this call deleted the login.
if redis.call('HGET', KEYS[1], 'code_digest') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

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

SCRIPTS = {
    "ACTIVE_LOCKS": ACTIVE_LOCKS,
    "CLAIM_ATTEMPT": CLAIM_ATTEMPT,
    "SETTLE_SUCCESS": SETTLE_SUCCESS,
    "RESERVE_CODE": RESERVE_CODE,
    "STATUS": STATUS,
    "CREATE_LOGIN": CREATE_LOGIN,
    "SET_CODE": SET_CODE,
    "RELEASE_CODE": RELEASE_CODE,
    "CONSUME_LOGIN": CONSUME_LOGIN,
    "COUNT_CLIENT_FAILURE": COUNT_CLIENT_FAILURE,
}
