--[[
  Add a job that waits for dependencies (a flow's parent, a job with depends_on, a batch
  callback): its record in state waiting_children, with the refs it waits for.

  KEYS[1] meta  KEYS[2] waiting_children  KEYS[3] events  KEYS[4] job  KEYS[5] pending
  KEYS[6] children

  ARGV[1] now (ms)  ARGV[2] id  ARGV[3] name  ARGV[4] data  ARGV[5] opts  ARGV[6] priority
  ARGV[7] timeout (s or "")  ARGV[8] trace id  ARGV[9] max retries  ARGV[10] events max length
  ARGV[11..] refs of the dependencies (``queue:id`` or ``@b:<batch>``); a wide fan's others are
  already in the pending and children sets (`registry/flows.py`)

  Events: waiting_children.
  Returns: -1 the queue does not exist; 0 a job with this id exists (nothing written); 1 added.
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
if redis.call("EXISTS", KEYS[4]) == 1 then return 0 end
local now = ARGV[1]
redis.call("HSET", KEYS[4], "name", ARGV[3], "data", ARGV[4], "opts", ARGV[5], "priority", ARGV[6],
  "timeout", ARGV[7], "trace", ARGV[8], "max_retries", ARGV[9], "state", "waiting_children",
  "attempts", 0, "stalled", 0, "token", 0, "created", now)
local refs = {}
for i = 11, #ARGV do
  refs[#refs + 1] = ARGV[i]
  if #refs == 1000 then
    redis.call("SADD", KEYS[5], unpack(refs))
    redis.call("SADD", KEYS[6], unpack(refs))
    refs = {}
  end
end
if #refs > 0 then
  redis.call("SADD", KEYS[5], unpack(refs))
  redis.call("SADD", KEYS[6], unpack(refs))
end
redis.call("ZADD", KEYS[2], now, ARGV[2])
emitJob(KEYS[3], ARGV[10], "waiting_children", KEYS[4], ARGV[2], "dependencies", redis.call("SCARD", KEYS[6]))
return 1
