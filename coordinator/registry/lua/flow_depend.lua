--[[
  Register a waiter (a parent, a dependent job, a batch) on existing jobs of one queue. A job
  that has already finished hands its outcome to the waiter at once (flow box field
  ``<job id>:d:<waiter ref>``), so no outcome is missed whenever the job finishes.
  Each job registered gets ``hold`` + 1 once per waiter: retention keeps it while the waiter
  waits (given back by flow_unhold.lua).

  KEYS[1] flow box  then per job: job key, dependents key
  ARGV[1] waiter ref  ARGV[2] failure policy  ARGV[3] now (ms)  ARGV[4..] job ids

  Events: none.
  Returns: a list with, per job, 0 no such job, 1 registered, 2 registered and already finished
  (hand-off written).
]]
local waiter, policy, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV do
  local jobId = ARGV[i]
  local k = 2 + (i - 4) * 2
  local fields = redis.call("HMGET", KEYS[k], "state", "result", "reason")
  local state = fields[1]
  if not state then
    out[#out + 1] = 0
  else
    -- one hold per waiter: a call repeated after a lost reply adds none
    if redis.call("HSET", KEYS[k + 1], waiter, policy) == 1 then redis.call("HINCRBY", KEYS[k], "hold", 1) end
    local value = nil
    if state == "completed" then value = fields[2] or "null"
    elseif state == "failed" or state == "cancelled" then value = fields[3] or state end
    if value then
      redis.call("HSET", KEYS[1], jobId .. ":d:" .. waiter,
        cjson.encode({c = jobId, o = state, v = value, t = now, w = {waiter, policy}}))
      out[#out + 1] = 2
    else
      out[#out + 1] = 1
    end
  end
end
return out
