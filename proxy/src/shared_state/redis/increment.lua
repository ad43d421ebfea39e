-- increment: ARGV[4] member, ARGV[5] and ARGV[6] the low and high 32 bits
-- of the signed 64-bit delta (two's complement), ARGV[7] ttl ms ('' for
-- none) for a new counter. A counter is its 8-byte little-endian encoding;
-- Lua's numbers are doubles, so the sum is done in two 32-bit halves
-- (wrapping, as the memory backend's i64 does).
-- Returns {1, new value}, {0} when the quota refuses, {-1} for a value that
-- is not a counter.
local m, dlo, dhi, ttl = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local W = 4294967296
local cur = redis.call('GET', base .. m)
local lo, hi = 0, 0
if cur then
  if #cur ~= 8 then
    return { -1 }
  end
  local b = { string.byte(cur, 1, 8) }
  lo = b[1] + b[2] * 256 + b[3] * 65536 + b[4] * 16777216
  hi = b[5] + b[6] * 256 + b[7] * 65536 + b[8] * 16777216
end
lo = lo + dlo
local carry = 0
if lo >= W then
  lo = lo - W
  carry = 1
end
hi = (hi + dhi + carry) % W
local bytes = {}
for i = 1, 4 do
  bytes[i] = lo % 256
  lo = (lo - bytes[i]) / 256
end
for i = 5, 8 do
  bytes[i] = hi % 256
  hi = (hi - bytes[i]) / 256
end
local value = string.char(unpack(bytes))
if cur then
  redis.call('SET', base .. m, value, 'KEEPTTL')
  return { 1, value }
end
local now = now_ms()
local size = #m - 2 + 8
if not fits({ m }, { size }, now) then
  return { 0 }
end
store(m, value, size, ttl, now)
return { 1, value }
