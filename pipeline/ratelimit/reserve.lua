-- reserve.lua: reserve the next slot of one budget (reservation GCRA + sliding log).
--
-- Mirrors pipeline/ratelimit/gcra.py:reserve line for line; see docs/RATE_LIMITER.md.
-- GCRA (virtual scheduling): ITU-T I.371; Brandur Leach, "Rate limiting, cells, and GCRA".
-- All times are integer microseconds on Redis' own clock (TIME), exact in Lua doubles.
--
-- KEYS[1] state hash (tat, paused_until, pause_reason)
-- KEYS[2] log zset   (member = reservation token or cold:*, score = slot)
-- KEYS[3] cold zset  (the virtual entries of the last cold start, for stats)
-- ARGV[1] limit        grants allowed in any rolling window
-- ARGV[2] window       window length
-- ARGV[3] emission     GCRA emission interval T = ceil(window / limit)
-- ARGV[4] burst        GCRA burst (tolerance tau = (burst - 1) * T)
-- ARGV[5] max_wait     longest wait the caller accepts; a later slot is not reserved
-- ARGV[6] token        unique member for this reservation
-- ARGV[7] idle_ttl_ms  lifetime of the state hash after the last use
--
-- Returns {granted (0/1), slot, now, cold_start (0/1)}.

local state_key, log_key, cold_key = KEYS[1], KEYS[2], KEYS[3]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local emission = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local token = ARGV[6]
local idle_ttl_ms = tonumber(ARGV[7])
local tolerance = (burst - 1) * emission

local function fmt(x)
  return string.format('%.0f', x)
end

-- Lengthen a key's TTL to at least ms (never shorten it: other entries may need longer).
local function extend_ttl(key, ms)
  local pttl = redis.call('PTTL', key)
  if pttl == -1 or (pttl >= 0 and pttl < ms) then
    redis.call('PEXPIRE', key, ms)
  end
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- Entries at or before now - window can never count again: every future slot is >= now.
redis.call('ZREMRANGEBYSCORE', log_key, '-inf', fmt(now - window))
redis.call('ZREMRANGEBYSCORE', cold_key, '-inf', fmt(now - window))

local fields = redis.call('HMGET', state_key, 'tat', 'paused_until')
local tat = tonumber(fields[1])
local paused_until = tonumber(fields[2]) or 0
local cold_start = 0

if tat == nil then
  -- Cold start: assume the busiest history GCRA could have granted just before now.
  cold_start = 1
  local args = {}
  local n = 0
  for i = 1, limit do
    local score = now - math.max(0, i - burst) * emission
    if score <= now - window then
      break
    end
    n = n + 1
    args[#args + 1] = fmt(score)
    args[#args + 1] = 'cold:' .. fmt(now) .. ':' .. i
    if #args >= 1000 then
      redis.call('ZADD', log_key, unpack(args))
      redis.call('ZADD', cold_key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('ZADD', log_key, unpack(args))
    redis.call('ZADD', cold_key, unpack(args))
  end
  if n > 0 then
    extend_ttl(cold_key, math.ceil(window / 1000) + 1000)
    extend_ttl(log_key, math.ceil(window / 1000) + 1000)
  end
  tat = now + tolerance + emission
  redis.call('HSET', state_key, 'tat', fmt(tat))
  extend_ttl(state_key, idle_ttl_ms)
end

-- GCRA slot, never inside a pause, never before the newest entry (slots only move forward).
local start = math.max(now, tat - tolerance, paused_until)
local newest = redis.call('ZRANGE', log_key, -1, -1, 'WITHSCORES')
if newest[2] then
  start = math.max(start, tonumber(newest[2]))
end

-- Sliding log: fewer than `limit` entries may lie in (slot - window, slot].
local slot = start
local lower = '(' .. fmt(start - window)
local inside = redis.call('ZCOUNT', log_key, lower, '+inf')
if inside >= limit then
  local blocking = redis.call(
    'ZRANGEBYSCORE', log_key, lower, '+inf', 'WITHSCORES', 'LIMIT', inside - limit, 1)
  slot = tonumber(blocking[2]) + window
end

if slot - now > max_wait then
  return {0, slot, now, cold_start}
end

redis.call('ZADD', log_key, fmt(slot), token)
redis.call('HSET', state_key, 'tat', fmt(math.max(slot, tat) + emission))
extend_ttl(state_key, math.max(idle_ttl_ms, math.ceil((slot - now) / 1000) + 1000))
-- The log matters until its newest slot has left the window.
extend_ttl(log_key, math.ceil((slot - now + window) / 1000) + 1000)
return {1, slot, now, cold_start}
