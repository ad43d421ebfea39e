-- delete: ARGV[4] member. Returns 1 if a live value was removed, else 0.
local m = ARGV[4]
local existed = redis.call('EXISTS', base .. m)
forget(m)
return existed
