--[[
  Dispatch parked waiting jobs whose hold is over: the queue was resumed, or a rate-limit
  window has passed. Nothing moves while the queue is paused. With a rate limit, at most the
  window's free capacity is released, so a backlog does not return all at once.

  KEYS[1] parked  KEYS[2] meta  KEYS[3] limiter  KEYS[4..13] broker lists
  KEYS[14..] job keys of the candidates, in ARGV order

  ARGV[1] now (ms)  ARGV[2] task name  ARGV[3] celery queue  ARGV[4] queue name
  ARGV[5] limiter max (0: none)  ARGV[6] limiter duration (ms)  ARGV[7..] candidate job ids

  Events: none (the jobs stay waiting).
  Returns: the number of jobs dispatched.
]]
if redis.call("HGET", KEYS[2], "paused") == "1" then return 0 end
local now = tonumber(ARGV[1])
local room = #ARGV
local limitMax = tonumber(ARGV[5])
if limitMax > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now - tonumber(ARGV[6]))
  room = limitMax - redis.call("ZCARD", KEYS[3])
end
local brokerKeys = sliceKeys(4, 10)
local moved = 0
for i = 7, #ARGV do
  if moved >= room then break end
  local jobId, jobKey = ARGV[i], KEYS[14 + i - 7]
  local hold = redis.call("ZSCORE", KEYS[1], jobId)
  if hold and tonumber(hold) <= now then
    redis.call("ZREM", KEYS[1], jobId)
    if redis.call("HGET", jobKey, "state") == "waiting" then
      makeWaiting(jobKey, KEYS[1], false, now, brokerKeys, ARGV[2], ARGV[3], ARGV[4], jobId)
      moved = moved + 1
    end
  end
end
return moved
