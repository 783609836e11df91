--[[
  A dependency of a waiter is run again (retry_job): the waiter waits for it again. A waiter
  that failed because of it goes back to waiting_children; one that went on without it (ignore)
  waits for it again.

  KEYS[1] waiter job  KEYS[2] pending  KEYS[3] failures  KEYS[4] failed  KEYS[5] waiting_children
  KEYS[6] events
  ARGV[1] waiter id  ARGV[2] dependency ref  ARGV[3] now (ms)  ARGV[4] events max length

  Events: waiting_children (re-armed).
  Returns: 1 re-armed from failed (its own waiters must be re-armed too); 2 waits for it again;
  0 nothing to do.
]]
local jobKey, jobId, ref = KEYS[1], ARGV[1], ARGV[2]
local fields = redis.call("HMGET", jobKey, "state", "failed_by")
if fields[1] == "failed" and fields[2] == ref then
  redis.call("ZREM", KEYS[4], jobId)
  redis.call("ZADD", KEYS[5], ARGV[3], jobId)
  redis.call("HSET", jobKey, "state", "waiting_children")
  redis.call("HDEL", jobKey, "reason", "finished", "failed_by")
  redis.call("SADD", KEYS[2], ref)
  redis.call("HDEL", KEYS[3], ref)
  emitJob(KEYS[6], ARGV[4], "waiting_children", jobKey, jobId, "rearmed_by", ref)
  return 1
end
if fields[1] == "waiting_children" and redis.call("HDEL", KEYS[3], ref) == 1 then
  redis.call("SADD", KEYS[2], ref)
  return 2
end
return 0
