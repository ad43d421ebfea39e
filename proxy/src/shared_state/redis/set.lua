-- set: ARGV[4] member, ARGV[5] value, ARGV[6] ttl ms ('' for none).
-- Returns 1, or 0 when the quota refuses.
local m, value, ttl = ARGV[4], ARGV[5], tonumber(ARGV[6])
local now = now_ms()
local size = #m - 2 + #value
if not fits({ m }, { size }, now) then
  return 0
end
store(m, value, size, ttl, now)
return 1
