--[[
  Remove finished jobs (retention trimming), each only if it is still in the given index, so a
  job retried meanwhile is left alone.

  A job still held by a waiter (field ``hold`` > 0: a parent or dependent job that has not left
  waiting_children) is kept.

  KEYS[1] index (completed, failed or cancelled)  then per candidate the same number of keys:
  job key first, then the keys removed with it (logs, flow records)
  ARGV[1..] candidate job ids

  Events: none.
  Returns: the number of jobs removed.
]]
local removed = 0
local per = (#KEYS - 1) / #ARGV
for i = 1, #ARGV do
  local first = 2 + (i - 1) * per
  if tonumber(redis.call("HGET", KEYS[first], "hold") or "0") <= 0
      and redis.call("ZREM", KEYS[1], ARGV[i]) == 1 then
    for k = first, first + per - 1 do redis.call("DEL", KEYS[k]) end
    removed = removed + 1
  end
end
return removed
