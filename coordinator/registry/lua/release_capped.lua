--[[
  Dispatch jobs parked over a concurrency cap (capped), oldest first, each once every cap it
  takes has a free slot; its leases are taken here (the start finds them its own), so a freed
  slot is not handed to more jobs than it can take. Nothing moves while the queue is paused.

  KEYS[1] capped  KEYS[2] meta  KEYS[3] parked  KEYS[4..13] broker lists
  then per candidate, in ARGV order: its job key, then the lease sets of its caps

  ARGV[1] now (ms)  ARGV[2] task name  ARGV[3] celery queue  ARGV[4] queue name  ARGV[5] lease (ms)
  then per candidate: job id, how many caps, and per cap: name, lease member, max

  Events: none (the jobs stay waiting).
  Returns: the number of jobs dispatched.
]]
if redis.call("HGET", KEYS[2], "paused") == "1" then return 0 end
local now, leaseMs = tonumber(ARGV[1]), tonumber(ARGV[5])
local brokerKeys = sliceKeys(4, 10)
local moved = 0
local k, a = 14, 6
while a <= #ARGV do
  local jobId, jobKey, n = ARGV[a], KEYS[k], tonumber(ARGV[a + 1])
  local caps = {}
  for i = 1, n do
    local c = a + 2 + (i - 1) * 3
    caps[i] = {KEYS[k + i], ARGV[c + 1], tonumber(ARGV[c + 2]), ARGV[c]}
  end
  if redis.call("ZSCORE", KEYS[1], jobId) then
    if redis.call("HGET", jobKey, "state") ~= "waiting" then
      redis.call("ZREM", KEYS[1], jobId)
    elseif not takeLeases(caps, now, leaseMs) then
      redis.call("ZREM", KEYS[1], jobId)
      makeWaiting(jobKey, KEYS[3], false, now, brokerKeys, ARGV[2], ARGV[3], ARGV[4], jobId)
      moved = moved + 1
    end
  end
  k, a = k + 1 + n, a + 2 + 3 * n
end
return moved
