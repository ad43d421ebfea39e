-- compare-and-swap: ARGV[4] member, ARGV[5] '1' if a value is expected
-- ('0': absence is), ARGV[6] the expected value, ARGV[7] the new value,
-- ARGV[8] ttl ms ('' for none).
-- Returns 1 if swapped, 0 if the value differed, -1 when the quota refuses.
local m, expects, expected, new, ttl = ARGV[4], ARGV[5] == '1', ARGV[6], ARGV[7], tonumber(ARGV[8])
local cur = redis.call('GET', base .. m)
if expects then
  if cur ~= expected then
    return 0
  end
elseif cur then
  return 0
end
local now = now_ms()
local size = #m - 2 + #new
if not fits({ m }, { size }, now) then
  return -1
end
store(m, new, size, ttl, now)
return 1
