--[[
  Remove finished jobs (retention trimming), each only if it is still in the given index, so a
  job retried meanwhile is left alone.

  KEYS[1] index (completed, failed or cancelled)  then per candidate: job key, logs key
  ARGV[1..] candidate job ids

  Events: none.
  Returns: the number of jobs removed.
]]
local removed = 0
for i = 1, #ARGV do
  if redis.call("ZREM", KEYS[1], ARGV[i]) == 1 then
    redis.call("DEL", KEYS[2 * i], KEYS[2 * i + 1])
    removed = removed + 1
  end
end
return removed
