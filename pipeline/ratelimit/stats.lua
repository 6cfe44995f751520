-- stats.lua: a consistent snapshot of one budget, read on Redis' clock.
--
-- KEYS[1] state hash, KEYS[2] log zset, KEYS[3] cold zset
-- ARGV[1] window (microseconds)
-- Returns {now, granted_in_window, waiting, paused_until, pause_reason}: grants in
-- (now - window, now] without the virtual cold-start entries, and reservations after now.

local state_key, log_key, cold_key = KEYS[1], KEYS[2], KEYS[3]
local window = tonumber(ARGV[1])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local lower = '(' .. string.format('%.0f', now - window)
local upper = string.format('%.0f', now)

local granted = redis.call('ZCOUNT', log_key, lower, upper)
  - redis.call('ZCOUNT', cold_key, lower, upper)
local waiting = redis.call('ZCOUNT', log_key, '(' .. upper, '+inf')
local fields = redis.call('HMGET', state_key, 'paused_until', 'pause_reason')
return {now, granted, waiting, tonumber(fields[1]) or 0, fields[2] or ''}
