--[[
  Re-dispatch waiting jobs whose current message was received by a worker that never started
  it (the worker died between fetching the message and claiming the job; the message sits in
  the transport's unacked hash until its visibility timeout). The job gets a new dispatch token,
  so the stranded message is stale if it is ever restored. The job never ran: its stalled count
  does not change.

  KEYS[1] parked  KEYS[2] meta  KEYS[3] events  KEYS[4..13] broker lists
  KEYS[14..] job keys of the candidates, in ARGV order, then capped and the group messages hash
  (a job parked over a concurrency cap, or whose message waits in its group, is not lost)

  ARGV[1] now (ms)  ARGV[2] task name  ARGV[3] celery queue  ARGV[4] queue name
  ARGV[5] events max length  ARGV[6..] candidates as pairs: job id, token of the stranded message

  Events: stalled (reason "unstarted"), per job re-dispatched.
  Returns: the ids of the jobs re-dispatched.
]]
local paused = redis.call("HGET", KEYS[2], "paused") == "1"
local brokerKeys = sliceKeys(4, 10)
local moved = {}
for i = 6, #ARGV, 2 do
  local jobId, token = ARGV[i], ARGV[i + 1]
  local jobKey = KEYS[14 + (i - 6) / 2]
  local cur = redis.call("HMGET", jobKey, "state", "token")
  if cur[1] == "waiting" and cur[2] == token and not redis.call("ZSCORE", KEYS[1], jobId)
      and not redis.call("ZSCORE", KEYS[#KEYS - 1], jobId) and redis.call("HEXISTS", KEYS[#KEYS], jobId) == 0 then
    makeWaiting(jobKey, KEYS[1], paused, tonumber(ARGV[1]), brokerKeys, ARGV[2], ARGV[3], ARGV[4], jobId)
    emit(KEYS[3], ARGV[5], "stalled", jobId, "reason", "unstarted")
    table.insert(moved, jobId)
  end
end
return moved
