-- The basic-auth backoff (postern-auth's backoff.rs, the same rules) in one atomic step.
-- KEYS[1]: the source's record; KEYS[2], if given: the record of one user name at that source.
-- A record is a hash: f = failures in a row, l = last failure, b = blocked until (0: not
-- blocked); times in ms since the epoch on the Redis server's clock, so every gateway shares
-- one clock. A record expires once it no longer matters (quiet for the longest wait after its
-- last failure or wait), so Redis keeps only sources and users that failed lately.
-- ARGV[1] is the operation:
--   'check'   -> {ms the source waits, ms the user waits, the user's failures}
--   'fail'    ARGV[2] user threshold, ARGV[3] source threshold, ARGV[4] first wait (ms),
--             ARGV[5] longest wait (ms) -> the longest wait now imposed (ms), -1 for none
--   'forgive' -> 1 when the user had failures (taken off the source's count too), else 0
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local op = ARGV[1]

local function load(key)
  local v = redis.call('HMGET', key, 'f', 'l', 'b')
  return tonumber(v[1]), tonumber(v[2]) or now, tonumber(v[3]) or 0
end

-- '%.0f': a plain integer string; Lua would write large numbers as 1.7e+12.
local function int(n)
  return string.format('%.0f', n)
end

if op == 'check' then
  local result = {0, 0, 0}
  for i, key in ipairs(KEYS) do
    local f, _, b = load(key)
    if b > now then
      result[i] = b - now
    end
    if i == 2 then
      result[3] = f or 0
    end
  end
  return result
end

if op == 'fail' then
  local initial = tonumber(ARGV[4])
  local longest = tonumber(ARGV[5])
  local imposed = -1
  for i, key in ipairs(KEYS) do
    local threshold = tonumber(i == 1 and ARGV[3] or ARGV[2])
    local f, l, b = load(key)
    f = f or 0
    -- Quiet for the longest wait after the last failure or wait: start afresh. Waiting out
    -- a capped window does not.
    if now - math.max(b, l) > longest then
      f = 0
      b = 0
    end
    f = f + 1
    l = now
    if f >= threshold then
      b = now + math.min(initial * 2 ^ math.min(f - threshold, 31), longest)
      imposed = math.max(imposed, b - now)
    end
    redis.call('HSET', key, 'f', f, 'l', int(l), 'b', int(b))
    redis.call('PEXPIRE', key, int(math.max(b, l) + longest - now + 1))
  end
  return imposed
end

if op == 'forgive' then
  local forgiven = tonumber(redis.call('HGET', KEYS[2], 'f'))
  if not forgiven then
    return 0
  end
  redis.call('DEL', KEYS[2])
  local f, _, b = load(KEYS[1])
  if f then
    f = math.max(f - forgiven, 0)
    if f == 0 and b <= now then
      redis.call('DEL', KEYS[1])
    else
      -- HSET keeps the record's expiry.
      redis.call('HSET', KEYS[1], 'f', f)
    end
  end
  return 1
end

return redis.error_reply('backoff.lua: unknown operation')
