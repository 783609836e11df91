--[[
  The lock keeper's round for the attempts of one queue running in one worker process: renew
  the lock of each attempt that still owns its job, and say why for each one that does not
  (its job was cancelled, or recovered as stalled and re-dispatched), so the worker can stop it.

  KEYS[2i-1] lock of attempt i  KEYS[2i] its job

  ARGV[1] lock TTL (ms)  ARGV[1+i] the token of attempt i

  Events: none.
  Returns: one string per attempt: "" it owns its job (lock renewed); else
           "<state>:<reason>" of the job ("missing:" when it is gone).
]]
local out = {}
for i = 1, #ARGV - 1 do
  local lockKey, jobKey = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call("GET", lockKey) == ARGV[1 + i] then
    redis.call("PEXPIRE", lockKey, ARGV[1])
    out[i] = ""
  else
    local f = redis.call("HMGET", jobKey, "state", "reason")
    out[i] = (f[1] or "missing") .. ":" .. (f[2] or "")
  end
end
return out
