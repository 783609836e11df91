--[[
  Change the priority of a job that has not started. A waiting job gets a new dispatch at the
  new priority; its old message becomes stale, so it runs once, at the new priority.

  KEYS[1] job  KEYS[2] parked  KEYS[3] meta  KEYS[4] events  KEYS[5..14] broker lists
  KEYS[15..26] group records (QueueKeys.group_keys): a job waiting in its group moves in it

  ARGV[1] job id  ARGV[2] priority (1..10)  ARGV[3] now (ms)  ARGV[4] task name
  ARGV[5] celery queue  ARGV[6] queue name  ARGV[7] events max length

  Events: none (the state does not change).
  Returns: -1 no such job; 0 its state does not allow it; 1 changed.
]]
local jobKey, jobId = KEYS[1], ARGV[1]
local state = redis.call("HGET", jobKey, "state")
if not state then return -1 end
if state ~= "waiting" and state ~= "delayed" then return 0 end
redis.call("HSET", jobKey, "priority", ARGV[2])
local g = groupKeys(15)
if state == "waiting" and leaveGroup(g, jobKey, jobId) then
  decrementField(g.sizes, redis.call("HGET", jobKey, "group"))
  groupRouter(g, {task = ARGV[4], celeryQueue = ARGV[5], queue = ARGV[6]})(jobKey, jobId, ARGV[3])
elseif state == "waiting" and not redis.call("ZSCORE", KEYS[2], jobId) then
  local paused = redis.call("HGET", KEYS[3], "paused") == "1"
  makeWaiting(jobKey, KEYS[2], paused, ARGV[3], sliceKeys(5, 10), ARGV[4], ARGV[5], ARGV[6], jobId)
end
return 1
