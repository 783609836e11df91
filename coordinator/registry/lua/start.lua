--[[
  A worker received a job's message: make the job active if this dispatch may run now.

  KEYS[1] job  KEYS[2] waiting  KEYS[3] active  KEYS[4] parked  KEYS[5] meta  KEYS[6] events
  KEYS[7] lock  KEYS[8] limiter  KEYS[9] cancelled  KEYS[10] dependents  KEYS[11] flow box
  KEYS[12] capped  KEYS[13..24] group records (QueueKeys.group_keys)
  KEYS[25..] concurrency caps: the queue's slots (when it has a cap), then named limiters' slots

  ARGV[1] job id  ARGV[2] token of the message  ARGV[3] now (ms)  ARGV[4] worker id
  ARGV[5] lock TTL (ms)  ARGV[6] events max length  ARGV[7] limiter max (0: none)
  ARGV[8] limiter duration (ms)  ARGV[9] hostname
  ARGV[10] "1" if the caps of the job's named limiters are given (else "0")
  ARGV[11..] per cap in KEYS[25..]: its name, lease member, max

  Events: active; cancelled (reason expired); limited (over a concurrency cap, parked).
  Returns: {"active", <job fields...>} to run it;
           {"missing"} no such job; {"stale"} the message is not the job's current dispatch
           (cancelled, re-prioritised, already run); {"paused"} the queue is paused and the job
           is parked; {"limited", due} over the rate limit, parked until due;
           {"expired"} its start deadline passed: cancelled, not run;
           {"limits", names} the job takes named limiters whose caps were not given (nothing
           written: call again with them); {"capped"} over a concurrency cap: parked in capped.
]]
local jobKey = KEYS[1]
if redis.call("EXISTS", jobKey) == 0 then return {"missing"} end
local cur = redis.call("HMGET", jobKey, "state", "token", "expires", "group", "limits")
if cur[1] ~= "waiting" or cur[2] ~= ARGV[2] then return {"stale"} end
if cur[5] and ARGV[10] ~= "1" then return {"limits", cur[5]} end
local jobId, now = ARGV[1], tonumber(ARGV[3])
local g = groupKeys(13)
if cur[3] and tonumber(cur[3]) <= now then
  if cur[4] then
    redis.call("ZREM", g.window, jobId)
    decrementField(g.sizes, cur[4])
  end
  redis.call("ZREM", KEYS[2], jobId)
  expire(jobKey, jobId, KEYS[9], KEYS[6], ARGV[6], now, "waiting", KEYS[10], KEYS[11])
  return {"expired"}
end
if redis.call("HGET", KEYS[5], "paused") == "1" then
  redis.call("ZADD", KEYS[4], 0, jobId)
  return {"paused"}
end
if cur[4] then redis.call("ZREM", g.window, jobId) end
local limitMax = tonumber(ARGV[7])
local duration = tonumber(ARGV[8])
if limitMax > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[8], "-inf", now - duration)
  if redis.call("ZCARD", KEYS[8]) >= limitMax then
    local oldest = redis.call("ZRANGE", KEYS[8], 0, 0, "WITHSCORES")
    local due = tonumber(oldest[2]) + duration
    redis.call("ZADD", KEYS[4], due, jobId)
    return {"limited", tostring(due)}
  end
end
-- concurrency caps: over one, the job waits in capped (no attempt spent) for a free slot
local caps = capsFrom(25, 11)
local full = takeLeases(caps, now, tonumber(ARGV[5]))
if full then
  redis.call("ZADD", KEYS[12], now, jobId)
  if cur[4] then freeGroupSlot(g, cur[4] .. NUL .. jobId) end
  emitJob(KEYS[6], ARGV[6], "limited", jobKey, jobId, "limit", caps[full][4])
  return {"capped"}
end
if cur[4] then groupStarted(g, jobId, cur[4], now, tonumber(ARGV[5])) end
if limitMax > 0 then
  redis.call("ZADD", KEYS[8], now, jobId .. ":" .. ARGV[2])
  redis.call("PEXPIRE", KEYS[8], duration * 2)
end
redis.call("ZREM", KEYS[2], jobId)
redis.call("ZADD", KEYS[3], now, jobId)
local attempts = redis.call("HINCRBY", jobKey, "attempts", 1)
redis.call("HSET", jobKey, "state", "active", "processed", now, "worker", ARGV[4], "host", ARGV[9])
redis.call("SET", KEYS[7], ARGV[2], "PX", ARGV[5])
emitJob(KEYS[6], ARGV[6], "active", jobKey, jobId, "attempt", attempts, "worker", ARGV[4])
return {"active", unpack(redis.call("HGETALL", jobKey))}
