--[[
  Claim up to N messages of a queue's outbox for publishing to the broker; first put back
  messages claimed longer ago than the stale time (their relay died before it confirmed them).

  KEYS[1] outbox (list, LPUSHed by dispatch)  KEYS[2] relaying (zset: message -> claim time)
  ARGV[1] now (ms)  ARGV[2] count  ARGV[3] stale after (ms)

  Events: none.
  Returns: the claimed messages, oldest first.
]]
local now = tonumber(ARGV[1])
local stale = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now - tonumber(ARGV[3]))
for _, message in ipairs(stale) do
  redis.call("ZREM", KEYS[2], message)
  redis.call("RPUSH", KEYS[1], message)
end
local claimed = redis.call("RPOP", KEYS[1], tonumber(ARGV[2]))
if not claimed then return {} end
for _, message in ipairs(claimed) do
  redis.call("ZADD", KEYS[2], now, message)
end
return claimed
