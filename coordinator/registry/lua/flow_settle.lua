--[[
  Apply finished dependencies to a waiting job (the waiter side of a flow hand-off). Idempotent:
  a dependency is applied only while it is in the waiter's pending set, so a hand-off applied
  twice (a duplicate completion, a replay after a crash) changes nothing.

  A completed dependency's result goes to the waiter's values hash. A failed or cancelled one
  follows the edge's policy: fail (the waiter fails, and hands that on to its own waiters),
  ignore (failure kept in the failures hash), remove (forgotten), continue (failure kept, the
  waiter starts now), skip (the waiter is cancelled: a batch's on_success, a Celery link), and
  on_error (a Celery link_error: the waiter starts on the failure, is cancelled on success).
  When nothing is pending, the waiter becomes waiting and is dispatched.

  KEYS[1] waiter job  KEYS[2] pending  KEYS[3] values  KEYS[4] failures  KEYS[5] waiting_children
  KEYS[6] waiting  KEYS[7] failed  KEYS[8] parked  KEYS[9] meta  KEYS[10] events
  KEYS[11] dependents of the waiter  KEYS[12] flow box  KEYS[13..22] broker lists
  KEYS[23] cancelled

  ARGV[1] waiter id  ARGV[2] now (ms)  ARGV[3] task name  ARGV[4] celery queue  ARGV[5] queue name
  ARGV[6] events max length  then 4 per dependency: ref, outcome, value, policy

  Events: child_completed | child_failed per dependency applied; waiting (released), failed or
  cancelled.
  Returns: {state, handed, left}: the waiter's state after ("gone" if it does not exist),
  1 if its own end was handed on (flow box field ``<id>:<token>``), 1 if it left
  waiting_children in this call.
]]
local jobKey, jobId, now, maxLen = KEYS[1], ARGV[1], ARGV[2], ARGV[6]
if redis.call("EXISTS", jobKey) == 0 then return {"gone", 0, 0} end
local state = redis.call("HGET", jobKey, "state")
local handed, left = 0, 0

local function release(why)
  redis.call("ZREM", KEYS[5], jobId)
  redis.call("HSET", jobKey, "state", "waiting")
  redis.call("ZADD", KEYS[6], waitingScore(KEYS[9], now), jobId)
  local paused = redis.call("HGET", KEYS[9], "paused") == "1"
  makeWaiting(jobKey, KEYS[8], paused, now, sliceKeys(13, 10), ARGV[3], ARGV[4], ARGV[5], jobId)
  emitJob(KEYS[10], maxLen, "waiting", jobKey, jobId, "after", why)
  state, left = "waiting", 1
end

-- the waiter ends without running (failed or cancelled); its own waiters get the hand-off
local function finish(newState, indexKey, reason, ref)
  redis.call("ZREM", KEYS[5], jobId)
  local token = redis.call("HINCRBY", jobKey, "token", 1)
  redis.call("HSET", jobKey, "state", newState, "finished", now, "reason", reason, "failed_by", ref)
  redis.call("ZADD", indexKey, now, jobId)
  emitJob(KEYS[10], maxLen, newState, jobKey, jobId, "reason", reason)
  state, left = newState, 1
  if handOff(KEYS[11], KEYS[12], jobId, token, newState, reason, now) then handed = 1 end
end

for a = 7, #ARGV, 4 do
  local ref, outcome, value, policy = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if redis.call("SREM", KEYS[2], ref) == 1 then
    local waiting = state == "waiting_children"
    if outcome == "completed" then
      redis.call("HSET", KEYS[3], ref, value)
      emitJob(KEYS[10], maxLen, "child_completed", jobKey, jobId, "child", ref)
      if policy == "on_error" and waiting then
        finish("cancelled", KEYS[23], "dependency " .. ref .. " completed: no error to handle", ref)
      end
    else
      emitJob(KEYS[10], maxLen, "child_failed", jobKey, jobId, "child", ref, "reason", value, "policy", policy)
      if policy ~= "remove" then redis.call("HSET", KEYS[4], ref, value) end
      if policy == "fail" and waiting then
        finish("failed", KEYS[7], "dependency " .. ref .. " " .. outcome .. ": " .. value, ref)
      elseif policy == "skip" and waiting then
        finish("cancelled", KEYS[23], value, ref)
      elseif (policy == "continue" or policy == "on_error") and waiting then
        release("continue")
      end
    end
  end
end
if state == "waiting_children" and redis.call("SCARD", KEYS[2]) == 0 then release("dependencies") end
return {state, handed, left}
