--[[
  Add members to an open batch (before they are enqueued, so none can finish uncounted).

  KEYS[1] batch meta  KEYS[2] pending  KEYS[3] members
  ARGV[1..] member refs

  Events: none.
  Returns: -1 no such batch; 0 the batch is done (nothing added); 1 added.
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
if redis.call("HGET", KEYS[1], "done") == "1" then return 0 end
for i = 1, #ARGV do
  if redis.call("SADD", KEYS[3], ARGV[i]) == 1 then
    redis.call("SADD", KEYS[2], ARGV[i])
    redis.call("HINCRBY", KEYS[1], "total", 1)
  end
end
return 1
