-- release.lua: give back a reservation that will not be used (the caller was interrupted).
--
-- Mirrors pipeline/ratelimit/gcra.py:release. Only a slot still in the future is removed; a
-- slot that has come is spent. When the removed slot was the newest, TAT steps back by T,
-- which never goes below the TAT from before that reservation (TAT' = max(slot, TAT) + T).
--
-- KEYS[1] state hash, KEYS[2] log zset
-- ARGV[1] emission (microseconds), ARGV[2] token
-- Returns {released (0/1), now}.

local state_key, log_key = KEYS[1], KEYS[2]
local emission = tonumber(ARGV[1])
local token = ARGV[2]

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local score = redis.call('ZSCORE', log_key, token)
if not score then
  return {0, now}
end
local slot = tonumber(score)
if slot <= now then
  return {0, now}
end

redis.call('ZREM', log_key, token)
if redis.call('ZCOUNT', log_key, '(' .. string.format('%.0f', slot), '+inf') == 0 then
  local tat = tonumber(redis.call('HGET', state_key, 'tat'))
  if tat then
    redis.call('HSET', state_key, 'tat', string.format('%.0f', tat - emission))
  end
end
return {1, now}
