-- delete: ARGV[4] member. Returns 1 if a live value was removed, else 0.
local m = ARGV[4]
local existed = redis.call('DEL', base .. m)
local old = redis.call('HGET', sizes, m)
if old then
  redis.call('DECRBY', total, tonumber(old))
  redis.call('HDEL', sizes, m)
  redis.call('ZREM', index, m)
end
return existed
