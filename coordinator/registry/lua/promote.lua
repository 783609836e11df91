--[[
  Move delayed jobs to waiting: those due (the workers' periodic sweep), or one at once
  (promote_job). Safe with many processes at once: each job moves only if still delayed.

  KEYS[1] delayed  KEYS[2] waiting  KEYS[3] parked  KEYS[4] meta  KEYS[5] events
  KEYS[6..15] broker lists  KEYS[16] cancelled  KEYS[17] flow box
  KEYS[18..] per candidate, in ARGV order: job key, dependents key

  ARGV[1] now (ms)  ARGV[2] "1" to move even if not due  ARGV[3] task name  ARGV[4] celery queue
  ARGV[5] queue name  ARGV[6] events max length  ARGV[7..] candidate job ids

  Events: waiting, per job moved; cancelled (reason expired) for a job past its start deadline.
  Returns: the number of jobs moved (expired ones included).
  then the 12 group records (QueueKeys.group_keys), last: a grouped job goes back to its group.
]]
local now, force = tonumber(ARGV[1]), ARGV[2] == "1"
local paused = redis.call("HGET", KEYS[4], "paused") == "1"
local q = {waiting = KEYS[2], meta = KEYS[4], parked = KEYS[3], events = KEYS[5], maxLen = ARGV[6],
  paused = paused, brokerKeys = sliceKeys(6, 10), task = ARGV[3], celeryQueue = ARGV[4], queue = ARGV[5]}
q.toGroup = groupRouter(groupKeys(#KEYS - 11), q)  -- a grouped job waits in its group
local moved = 0
for i = 7, #ARGV do
  local jobId, jobKey = ARGV[i], KEYS[18 + (i - 7) * 2]
  local due = redis.call("ZSCORE", KEYS[1], jobId)
  local cur = redis.call("HMGET", jobKey, "state", "expires")
  if due and (force or tonumber(due) <= now) and cur[1] == "delayed" then
    redis.call("ZREM", KEYS[1], jobId)
    if cur[2] and tonumber(cur[2]) <= now then
      expire(jobKey, jobId, KEYS[16], KEYS[5], ARGV[6], now, "delayed", KEYS[19 + (i - 7) * 2], KEYS[17])
    else
      moveToWaiting(q, jobKey, jobId, now)
    end
    moved = moved + 1
  end
end
return moved
