-- GCRA in one atomic step, the same algorithm as the local limiter (governor).
-- KEYS[1]: the bucket; ARGV[1]: interval between requests (µs); ARGV[2]: burst.
-- The bucket holds its theoretical arrival time (TAT, µs since the epoch on the Redis
-- server's clock, so every gateway shares one clock) and expires when it is full again, so
-- Redis keeps only buckets in use.
-- Returns {allowed (1|0), remaining, µs until the bucket is full (allowed) or until a
-- request would be allowed (refused)}.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, 0, allow_at - now}
end
local full_in = new_tat - now
-- '%.0f': a plain integer string; Lua would write 1.7e+15 and lose the microseconds.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(full_in / 1000) + 1)
return {1, math.floor((interval * burst - full_in) / interval), full_in}
