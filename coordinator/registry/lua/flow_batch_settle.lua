--[[
  Apply finished members to a batch (the batch side of a flow hand-off); idempotent like
  flow_settle.lua. The pseudo-member ``@seal`` is settled when the batch's ``with`` block exits.
  The batch is done when nothing is pending; done is reported on every later call too, so a
  replayed hand-off fires the callbacks again, where they are idempotent.

  KEYS[1] batch meta  KEYS[2] pending  KEYS[3] failures
  ARGV[1] now (ms)  then 3 per member: ref, outcome, value

  Events: none (the callbacks' queues get theirs).
  Returns: {"gone"}; {"open"}; or {"done", failed count, on_complete ref, on_success ref,
  parent batch id} (refs "" when absent).
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return {"gone"} end
for a = 2, #ARGV, 3 do
  local ref, outcome = ARGV[a], ARGV[a + 1]
  if redis.call("SREM", KEYS[2], ref) == 1 then
    if ref == "@seal" then
      redis.call("HSET", KEYS[1], "sealed", "1")
    elseif outcome == "completed" then
      redis.call("HINCRBY", KEYS[1], "succeeded", 1)
    else
      redis.call("HINCRBY", KEYS[1], "failed", 1)
      redis.call("HSET", KEYS[3], ref, ARGV[a + 2])
    end
  end
end
if redis.call("HGET", KEYS[1], "done") ~= "1" then
  if redis.call("SCARD", KEYS[2]) > 0 then return {"open"} end
  redis.call("HSET", KEYS[1], "done", "1", "finished", ARGV[1])
end
local f = redis.call("HMGET", KEYS[1], "failed", "on_complete", "on_success", "parent")
return {"done", f[1] or "0", f[2] or "", f[3] or "", f[4] or ""}
