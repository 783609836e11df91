--[[
  Cancel a job that has not started (waiting or delayed), or an active one when allowed.
  The token is bumped and the lock deleted, so a message of the job still in the broker, or
  the late finish of the running attempt, is stale and changes nothing; the worker running it
  sees its lock gone within a second and asks the processor to stop (runtime/control.py).

  KEYS[1] job  KEYS[2] waiting  KEYS[3] delayed  KEYS[4] parked  KEYS[5] active
  KEYS[6] cancelled  KEYS[7] events  KEYS[8] lock  KEYS[9] waiting_children  KEYS[10] dependents
  KEYS[11] flow box  KEYS[12] capped  KEYS[13..24] group records (QueueKeys.group_keys)
  KEYS[25..] concurrency caps the job may hold

  ARGV[1] job id  ARGV[2] now (ms)  ARGV[3] "1" to allow an active job  ARGV[4] events max length
  ARGV[5] reason (kept as the job's reason)  ARGV[6] the job's group ("" none)
  ARGV[7..] per cap in KEYS[25..]: name, lease member, max

  A cancelled job frees the dedup record it holds (dedupRelease in _lib.lua).
  Events: cancelled.
  A job waiting for its children may be cancelled too; a cancelled job with waiters hands its
  outcome (``cancelled``) to them like a failure.
  Returns: -1 no such job; 0 its state does not allow it; 1 cancelled; {1, field, entry} cancelled,
  with a hand-off (field <job id>:<new token>).
]]
local jobKey, jobId = KEYS[1], ARGV[1]
local state = redis.call("HGET", jobKey, "state")
if not state then return -1 end
if state == "active" and ARGV[3] ~= "1" then return 0 end
if state ~= "waiting" and state ~= "delayed" and state ~= "active" and state ~= "waiting_children" then return 0 end
redis.call("ZREM", KEYS[2], jobId)
redis.call("ZREM", KEYS[3], jobId)
redis.call("ZREM", KEYS[4], jobId)
redis.call("ZREM", KEYS[5], jobId)
redis.call("ZREM", KEYS[9], jobId)
redis.call("DEL", KEYS[8])
redis.call("ZREM", KEYS[12], jobId)
dropLeases(capsFrom(25, 7))
if ARGV[6] ~= "" then
  local g = groupKeys(13)
  leaveGroup(g, jobKey, jobId)
  if state == "waiting" then decrementField(g.sizes, ARGV[6]) end
  freeGroupSlot(g, ARGV[6] .. NUL .. jobId)
end
local token = redis.call("HINCRBY", jobKey, "token", 1)
redis.call("HSET", jobKey, "state", "cancelled", "finished", ARGV[2], "reason", ARGV[5])
dedupRelease(jobKey, jobId)
redis.call("ZADD", KEYS[6], ARGV[2], jobId)
emitJob(KEYS[7], ARGV[4], "cancelled", jobKey, jobId, "from", state, "reason", ARGV[5])
return doneReply(handOff(KEYS[10], KEYS[11], jobId, token, "cancelled", ARGV[5], ARGV[2]))
