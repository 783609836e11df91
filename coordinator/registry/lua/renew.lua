--[[
  The lock keeper's round for the attempts of one queue running in one worker process: renew
  the lock of each attempt that still owns its job, with the leases it holds (concurrency caps,
  its group's), and say why for each one that does not (its job was cancelled, or recovered as
  stalled and re-dispatched), so the worker can stop it.

  KEYS per attempt: its lock, its job, then the lease sets it holds
  ARGV[1] lock TTL (ms)  ARGV[2] now (ms)  then per attempt: its token, how many leases, and
  the member of each lease

  Events: none.
  Returns: one string per attempt: "" it owns its job (lock renewed); else
           "<state>:<reason>" of the job ("missing:" when it is gone).
]]
local out = {}
local k, a = 1, 3
local expiry = tonumber(ARGV[2]) + tonumber(ARGV[1])
while a <= #ARGV do
  local lockKey, jobKey = KEYS[k], KEYS[k + 1]
  local leases = tonumber(ARGV[a + 1])
  if redis.call("GET", lockKey) == ARGV[a] then
    redis.call("PEXPIRE", lockKey, ARGV[1])
    for i = 1, leases do redis.call("ZADD", KEYS[k + 1 + i], "XX", expiry, ARGV[a + 1 + i]) end
    out[#out + 1] = ""
  else
    local f = redis.call("HMGET", jobKey, "state", "reason")
    out[#out + 1] = (f[1] or "missing") .. ":" .. (f[2] or "")
  end
  k, a = k + 2 + leases, a + 2 + leases
end
return out
