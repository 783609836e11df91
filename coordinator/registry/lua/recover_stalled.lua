--[[
  Recover active jobs whose lock expired (their worker died or lost Redis): back to waiting with
  a new dispatch, or failed after more than max_stalled_count stalls.

  KEYS[1] active  KEYS[2] waiting  KEYS[3] failed  KEYS[4] parked  KEYS[5] meta  KEYS[6] events
  KEYS[7] metrics  KEYS[8..17] broker lists  KEYS[18] flow box
  then per candidate: job key, lock key, dependents key

  ARGV[1] now (ms)  ARGV[2] max stalled count  ARGV[3] task name  ARGV[4] celery queue
  ARGV[5] queue name  ARGV[6] events max length  ARGV[7] minute bucket  ARGV[8..] candidate ids

  A job failed here with waiters hands its outcome to them (flow box), like finish.lua, and
  frees the dedup record it holds.

  Events: stalled, then waiting or failed, per job recovered.
  Returns: the number of jobs recovered.
  then the 12 group records (QueueKeys.group_keys), last: a grouped job goes back to its group.
]]
local now, maxStalled = tonumber(ARGV[1]), tonumber(ARGV[2])
local paused = redis.call("HGET", KEYS[5], "paused") == "1"
local q = {waiting = KEYS[2], meta = KEYS[5], parked = KEYS[4], events = KEYS[6], maxLen = ARGV[6],
  paused = paused, brokerKeys = sliceKeys(8, 10), task = ARGV[3], celeryQueue = ARGV[4], queue = ARGV[5]}
q.toGroup = groupRouter(groupKeys(#KEYS - 11), q)  -- a grouped job waits in its group
local recovered = 0
for i = 8, #ARGV do
  local jobId = ARGV[i]
  local jobKey, lockKey = KEYS[19 + (i - 8) * 3], KEYS[20 + (i - 8) * 3]
  if redis.call("EXISTS", lockKey) == 0 and redis.call("HGET", jobKey, "state") == "active" then
    redis.call("ZREM", KEYS[1], jobId)
    local stalled = redis.call("HINCRBY", jobKey, "stalled", 1)
    emitJob(KEYS[6], ARGV[6], "stalled", jobKey, jobId, "count", stalled)
    if stalled > maxStalled then
      local reason = "job stalled more than allowable limit"
      local token = redis.call("HINCRBY", jobKey, "token", 1)
      redis.call("HSET", jobKey, "state", "failed", "finished", now, "reason", reason)
      dedupRelease(jobKey, jobId)
      handOff(KEYS[21 + (i - 8) * 3], KEYS[18], jobId, token, "failed", reason, now)
      redis.call("ZADD", KEYS[3], now, jobId)
      countOutcome(KEYS[7], ARGV[7], "f")
      emitJob(KEYS[6], ARGV[6], "failed", jobKey, jobId, "reason", reason)
    else
      moveToWaiting(q, jobKey, jobId, now)
    end
    recovered = recovered + 1
  end
end
return recovered
