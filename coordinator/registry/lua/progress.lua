--[[
  Record the progress of a running attempt.

  KEYS[1] job  KEYS[2] events
  ARGV[1] job id  ARGV[2] token  ARGV[3] progress JSON  ARGV[4] events max length

  Events: progress.
  Returns: 1 recorded; 0 the attempt no longer owns the job.
]]
local cur = redis.call("HMGET", KEYS[1], "state", "token")
if cur[1] ~= "active" or cur[2] ~= ARGV[2] then return 0 end
redis.call("HSET", KEYS[1], "progress", ARGV[3])
emitJob(KEYS[2], ARGV[4], "progress", KEYS[1], ARGV[1], "progress", ARGV[3])
return 1
