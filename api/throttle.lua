-- Per-caller request limit: a sliding log of the last window's requests (one sorted set per
-- caller and limit), timed by Redis' own clock. Admits a request only when fewer than LIMIT
-- were admitted in the rolling window, so no window of WINDOW_US ever holds more than LIMIT.
--
-- KEYS[1]  the caller's log (sorted set: member = unique id, score = admission time in us)
-- ARGV[1]  LIMIT (requests per window)
-- ARGV[2]  WINDOW_US (window length in microseconds)
-- ARGV[3]  a unique member id for this request
-- Returns {admitted (1|0), remaining, retry_after_us}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = tonumber(oldest[2]) + window - now
if retry < 1 then retry = 1 end
return {0, 0, retry}
