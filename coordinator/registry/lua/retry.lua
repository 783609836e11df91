--[[
  Run a failed or cancelled job again, with a fresh set of retries.

  KEYS[1] job  KEYS[2] failed  KEYS[3] cancelled  KEYS[4] waiting  KEYS[5] parked  KEYS[6] meta
  KEYS[7] events  KEYS[8..17] broker lists

  ARGV[1] job id  ARGV[2] now (ms)  ARGV[3] task name  ARGV[4] celery queue  ARGV[5] queue name
  ARGV[6] events max length

  Events: waiting.
  Returns: -1 no such job; 0 its state does not allow it; 1 waiting again.
  then the 12 group records (QueueKeys.group_keys), last: a grouped job goes back to its group.
]]
local jobKey, jobId = KEYS[1], ARGV[1]
local state = redis.call("HGET", jobKey, "state")
if not state then return -1 end
if state ~= "failed" and state ~= "cancelled" then return 0 end
redis.call("ZREM", KEYS[2], jobId)
redis.call("ZREM", KEYS[3], jobId)
redis.call("HSET", jobKey, "attempts", 0, "stalled", 0)
redis.call("HDEL", jobKey, "finished", "reason", "result", "processed", "worker")
local q = {waiting = KEYS[4], meta = KEYS[6], parked = KEYS[5], events = KEYS[7], maxLen = ARGV[6],
  paused = redis.call("HGET", KEYS[6], "paused") == "1", brokerKeys = sliceKeys(8, 10),
  task = ARGV[3], celeryQueue = ARGV[4], queue = ARGV[5]}
q.toGroup = groupRouter(groupKeys(#KEYS - 11), q)  -- a grouped job waits in its group
moveToWaiting(q, jobKey, jobId, ARGV[2], "retried", "1")
return 1
