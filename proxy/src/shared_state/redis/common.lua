-- Prepended to every sluice shared-state script. One plugin's namespace:
--   KEYS[1]  a sorted set of its members ("d:<key>" for values, "r:<key>"
--            for rate-limit buckets), scored by expiry in Unix ms (+inf: none)
--   KEYS[2]  a hash: each member's size (key plus value bytes)
--   KEYS[3]  the total of those sizes
--   ARGV[1]  the quota's max_entries, ARGV[2] its max_bytes
--   ARGV[3]  the prefix of the members' value keys (value key = prefix .. member)
-- Operation arguments start at ARGV[4].
local index, sizes, total = KEYS[1], KEYS[2], KEYS[3]
local max_entries, max_bytes, base = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]), tonumber(t[2])
end

local function now_ms()
  local s, us = clock()
  return s * 1000 + math.floor(us / 1000)
end

-- Forget members whose value has expired (at most 1024 per call).
local function reclaim(now)
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, 1024)
  for _, m in ipairs(gone) do
    if redis.call('EXISTS', base .. m) == 0 then
      redis.call('DECRBY', total, tonumber(redis.call('HGET', sizes, m) or '0'))
      redis.call('HDEL', sizes, m)
      redis.call('ZREM', index, m)
    end
  end
end

-- Whether storing members[i] at size news[i] keeps the namespace within
-- its quota (shrinking always does). Expired members still count until
-- reclaimed; a refusal reclaims them and asks once more.
local function fits(members, news, now)
  for attempt = 1, 2 do
    local entries, bytes = 0, 0
    for i, m in ipairs(members) do
      local old = redis.call('HGET', sizes, m)
      if old then
        bytes = bytes + news[i] - tonumber(old)
      else
        entries = entries + 1
        bytes = bytes + news[i]
      end
    end
    local entries_fit = entries <= 0 or redis.call('ZCARD', index) + entries <= max_entries
    local bytes_fit = bytes <= 0 or tonumber(redis.call('GET', total) or '0') + bytes <= max_bytes
    if entries_fit and bytes_fit then
      return true
    end
    if attempt == 1 then
      reclaim(now)
    end
  end
  return false
end

-- Forget member and its value.
local function forget(m)
  redis.call('DEL', base .. m)
  local old = redis.call('HGET', sizes, m)
  if old then
    redis.call('DECRBY', total, tonumber(old))
    redis.call('HDEL', sizes, m)
    redis.call('ZREM', index, m)
  end
end

-- Store value under member, counted at size, expiring after ttl ms (nil:
-- never; 0: at once, so it is as good as gone).
local function store(m, value, size, ttl, now)
  if ttl and ttl <= 0 then
    forget(m)
    return
  end
  if ttl then
    redis.call('SET', base .. m, value, 'PX', ttl)
    redis.call('ZADD', index, now + ttl, m)
  else
    redis.call('SET', base .. m, value)
    redis.call('ZADD', index, '+inf', m)
  end
  local old = tonumber(redis.call('HGET', sizes, m) or '-1')
  -- A bucket or counter rewritten at its size changes no accounting.
  if old ~= size then
    redis.call('HSET', sizes, m, size)
    redis.call('INCRBY', total, size - math.max(old, 0))
  end
end

