-- acquire: the GCRA decision of proxy/src/shared_state/gcra.rs, made here
-- in one round trip. ARGV[4] '1' to take tokens ('0': cost 0, read only),
-- then six per bucket: member, cost×T as whole seconds and nanoseconds, τ
-- as whole seconds and nanoseconds, and the size the bucket counts at.
-- Times are (seconds, nanoseconds) pairs: Lua's numbers are doubles, exact
-- only to 2^53, and Unix nanoseconds are past that. A bucket's TAT is
-- stored as the text "<seconds> <nanoseconds>". The clock is Redis's.
-- Returns {1 or 0 (allowed), now s, now ns, then each bucket's TAT s, ns},
-- or {-1} when the quota refuses.
local G = 1000000000
local takes = ARGV[4] == '1'
local s, us = clock()
local now_s, now_n = s, us * 1000
local now = s * 1000 + math.floor(us / 1000)
local count = (#ARGV - 4) / 6
local members, news, tats = {}, {}, {}
local allowed = true
for i = 1, count do
  local a = 4 + (i - 1) * 6
  local m = ARGV[a + 1]
  local ts, tn = now_s, now_n
  local stored = redis.call('GET', base .. m)
  if stored then
    local ss, sn = string.match(stored, '^(%d+) (%d+)$')
    if ss then
      ss, sn = tonumber(ss), tonumber(sn)
      if ss > ts or (ss == ts and sn > tn) then
        ts, tn = ss, sn
      end
    end
  end
  local xs, xn = ts + tonumber(ARGV[a + 2]), tn + tonumber(ARGV[a + 3])
  if xn >= G then
    xs, xn = xs + 1, xn - G
  end
  local ls, ln = now_s + tonumber(ARGV[a + 4]), now_n + tonumber(ARGV[a + 5])
  if ln >= G then
    ls, ln = ls + 1, ln - G
  end
  if xs > ls or (xs == ls and xn > ln) then
    allowed = false
  end
  members[i] = m
  news[i] = tonumber(ARGV[a + 6])
  tats[i] = { ts, tn, xs, xn }
end
if allowed and takes then
  if not fits(members, news, now) then
    return { -1 }
  end
  for i = 1, count do
    local t = tats[i]
    local ttl = (t[3] - now_s) * 1000 + math.ceil((t[4] - now_n) / 1000000) + 1000
    store(members[i], string.format('%.0f %.0f', t[3], t[4]), news[i], ttl, now)
  end
end
local reply = { allowed and 1 or 0, now_s, now_n }
for i = 1, count do
  local t = tats[i]
  if allowed then
    reply[#reply + 1] = t[3]
    reply[#reply + 1] = t[4]
  else
    reply[#reply + 1] = t[1]
    reply[#reply + 1] = t[2]
  end
end
return reply
