--[[
  The own consumer of an async worker (runtime/async_runner.py) takes up to ARGV[2] messages of a
  queue, highest priority first, oldest first within a level (as kombu's BRPOP does), and records
  each in kombu's unacked hash and index, as kombu's Redis transport does on delivery, but in the
  same step: a worker that dies before it starts a taken job leaves the job waiting with an old
  unacked entry, which the unstarted-job sweep (recover_orphans.lua) dispatches again.
  Used with a Redis broker only, where the broker lists and kombu's keys share one server.

  KEYS[1] unacked (hash)  KEYS[2] unacked index  KEYS[3] the worker's pause flag
  KEYS[4..] the queue's broker lists, highest priority first

  ARGV[1] now (s, as kombu scores its index)  ARGV[2] how many at most  ARGV[3] routing key

  Events: none (start.lua emits "active").
  Returns: the delivery tags of the messages taken ("<celery queue>/<job id>.<token>"); none
  while the worker is paused.
]]
if redis.call("EXISTS", KEYS[3]) == 1 then return {} end
local taken = {}
local want = tonumber(ARGV[2])
local routing = cjson.encode(ARGV[3])
for i = 4, #KEYS do
  while #taken < want do
    local message = redis.call("RPOP", KEYS[i])
    if not message then break end
    local tag = cjson.decode(message)["properties"]["delivery_tag"]
    redis.call("HSET", KEYS[1], tag, "[" .. message .. ',"",' .. routing .. "]")
    redis.call("ZADD", KEYS[2], ARGV[1], tag)
    taken[#taken + 1] = tag
  end
  if #taken >= want then break end
end
return taken
