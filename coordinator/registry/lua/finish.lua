--[[
  End an attempt: completed, failed for good, or failed with a retry after a back-off.
  Only the current dispatch may finish the job (fencing by token): a late finish of an attempt
  that stalled, was cancelled or was re-run changes nothing.

  KEYS[1] job  KEYS[2] active  KEYS[3] completed  KEYS[4] failed  KEYS[5] delayed  KEYS[6] events
  KEYS[7] lock  KEYS[8] metrics  KEYS[9] logs  KEYS[10] dependents  KEYS[11] flow box
  KEYS[12..23] group records (QueueKeys.group_keys)  KEYS[24..] concurrency caps the attempt holds

  ARGV[1] job id  ARGV[2] token  ARGV[3] outcome: completed | failed | retry  ARGV[4] now (ms)
  ARGV[5] result JSON (completed) or reason (failed, retry)  ARGV[6] stack trace (failed, retry)
  ARGV[7] due (ms, retry)  ARGV[8] "1" to remove the job at once (remove_on_complete/fail True)
  ARGV[9] events max length  ARGV[10] minute bucket  ARGV[11] processing time (ms)
  ARGV[12] metrics field of the processing-time histogram bucket (``all:le:<ms>``)
  ARGV[13] the job's group ("" none)  ARGV[14..] per cap in KEYS[24..]: name, lease member, max

  The attempt's leases (concurrency caps, its group's) are dropped whatever the outcome.

  Metrics (KEYS[8], see coordinator/metrics.py): counted for final outcomes (completed, failed),
  not for retried attempts.

  A job that ends (not retried) frees the dedup record it holds (dedupRelease in _lib.lua).
  Events: completed | failed | retrying + delayed.
  Returns: 1 done; {1, field, entry} done, and a flow hand-off was written (field <job id>:<token> of
  the flow box; the entry is its JSON); 0 stale (this attempt no longer owns the job).
]]
local jobKey, jobId, outcome, now = KEYS[1], ARGV[1], ARGV[3], tonumber(ARGV[4])
local cur = redis.call("HMGET", jobKey, "state", "token", "dedup")
if cur[1] ~= "active" or cur[2] ~= ARGV[2] then return 0 end
redis.call("ZREM", KEYS[2], jobId)
redis.call("DEL", KEYS[7])
dropLeases(capsFrom(24, 14))
if ARGV[13] ~= "" then freeGroupSlot(groupKeys(12), ARGV[13] .. NUL .. jobId) end
local minute = ARGV[10]
local function count(kind)
  countOutcome(KEYS[8], minute, kind)
  countDuration(KEYS[8], minute, ARGV[11], ARGV[12])
end
if outcome ~= "retry" then dedupRelease(jobKey, jobId, cur[3]) end
if outcome == "completed" then
  count("c")
  emitJob(KEYS[6], ARGV[9], "completed", jobKey, jobId, "duration_ms", ARGV[11])
  local handed = handOff(KEYS[10], KEYS[11], jobId, ARGV[2], "completed", ARGV[5], now)
  if ARGV[8] == "1" then
    redis.call("DEL", jobKey, KEYS[9])
    return doneReply(handed)
  end
  redis.call("HSET", jobKey, "state", "completed", "finished", now, "result", ARGV[5])
  redis.call("ZADD", KEYS[3], now, jobId)
  return doneReply(handed)
end
local stack = cjson.decode(redis.call("HGET", jobKey, "stack") or "[]")
table.insert(stack, ARGV[6])
while #stack > 10 do table.remove(stack, 1) end
redis.call("HSET", jobKey, "reason", ARGV[5], "stack", cjson.encode(stack))
if outcome == "retry" then
  redis.call("HSET", jobKey, "state", "delayed")
  redis.call("ZADD", KEYS[5], ARGV[7], jobId)
  emitJob(KEYS[6], ARGV[9], "retrying", jobKey, jobId, "reason", ARGV[5], "due", ARGV[7])
  emitJob(KEYS[6], ARGV[9], "delayed", jobKey, jobId, "due", ARGV[7])
  return 1
end
count("f")
emitJob(KEYS[6], ARGV[9], "failed", jobKey, jobId, "reason", ARGV[5], "duration_ms", ARGV[11])
local handed = handOff(KEYS[10], KEYS[11], jobId, ARGV[2], "failed", ARGV[5], now)
if ARGV[8] == "1" then
  redis.call("DEL", jobKey, KEYS[9])
  return doneReply(handed)
end
redis.call("HSET", jobKey, "state", "failed", "finished", now)
redis.call("ZADD", KEYS[4], now, jobId)
return doneReply(handed)
