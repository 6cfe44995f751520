-- confirm.lua: after the sleep, check that a reservation still stands and stamp its dispatch.
--
-- Mirrors pipeline/ratelimit/gcra.py:confirm; see docs/RATE_LIMITER.md, "Dispatch stamp".
-- The provider counts a request when it arrives, not at its slot. A caller that wakes late
-- (CPU contention, GIL) would otherwise be counted at a slot earlier than its real send, and
-- the request a window later could arrive inside the provider's window. Moving the entry to
-- the later of its slot and now makes later reservations count from the real dispatch, so the
-- guard only has to cover the short way from this call to the provider.
--
-- Called again once the provider answered, with ARGV[3] = the request's estimated arrival on
-- Redis' clock (the arrival correction of docs/RATE_LIMITER.md): the entry then moves there.
-- Entries only ever move later.
--
-- KEYS[1] log zset (member = reservation token, score = slot)
-- ARGV[1] window (microseconds), ARGV[2] token, ARGV[3] stamp to move to (0: now)
-- Returns {kept (0/1), now, stamp}: kept is 0 when a pause revoked the reservation, Redis
-- lost it or it left the window; stamp is the entry's score afterwards (0 when not kept).

local log_key = KEYS[1]
local window = tonumber(ARGV[1])
local token = ARGV[2]
local at = tonumber(ARGV[3]) or 0

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local score = redis.call('ZSCORE', log_key, token)
if not score then
  return {0, now, 0}
end
local stamp = tonumber(score)
local target = now
if at > 0 then
  target = math.min(at, now) -- a request cannot have arrived in the future
end
if target > stamp then
  stamp = target
  redis.call('ZADD', log_key, 'XX', string.format('%.0f', stamp), token)
  -- The entry (now at or before now) matters until now + window at most.
  local ms = math.ceil(window / 1000) + 1000
  local pttl = redis.call('PTTL', log_key)
  if pttl == -1 or (pttl >= 0 and pttl < ms) then
    redis.call('PEXPIRE', log_key, ms)
  end
end
return {1, now, stamp}
