-- pause.lua: pause one budget for every process until now + duration (HTTP 429).
--
-- Mirrors pipeline/ratelimit/gcra.py:pause. A longer pause already in force is kept.
-- Reservations inside the pause are revoked (their holders find their token gone when they
-- wake and reserve again), and TAT moves past the pause so the budget resumes at the steady
-- rate rather than with a burst.
--
-- KEYS[1] state hash, KEYS[2] log zset
-- ARGV[1] duration (microseconds), ARGV[2] reason, ARGV[3] tolerance tau (microseconds),
-- ARGV[4] idle_ttl_ms
-- Returns {paused_until, revoked, now}.

local state_key, log_key = KEYS[1], KEYS[2]
local duration = tonumber(ARGV[1])
local reason = ARGV[2]
local tolerance = tonumber(ARGV[3])
local idle_ttl_ms = tonumber(ARGV[4])

local function fmt(x)
  return string.format('%.0f', x)
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local fields = redis.call('HMGET', state_key, 'tat', 'paused_until')
local tat = tonumber(fields[1])
local paused_until = tonumber(fields[2]) or 0
if now + duration > paused_until then
  paused_until = now + duration
  redis.call('HSET', state_key, 'paused_until', fmt(paused_until), 'pause_reason', reason)
end

local revoked = redis.call('ZREMRANGEBYSCORE', log_key, '(' .. fmt(now), '(' .. fmt(paused_until))
if tat then
  redis.call('HSET', state_key, 'tat', fmt(math.max(tat, paused_until + tolerance)))
end
redis.call('PEXPIRE', state_key, math.max(idle_ttl_ms, math.ceil((paused_until - now) / 1000) + 1000))
return {paused_until, revoked, now}
