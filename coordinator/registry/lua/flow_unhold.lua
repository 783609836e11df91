--[[
  Waiters that no longer wait give back their hold on jobs of one queue: retention may trim the
  jobs again. Safe to repeat: each (job, waiter) hold is given back once, marked by the job's
  field ``unheld:<waiter ref>``, so a call repeated after a lost reply, or a replayed hand-off,
  changes nothing. A job that is gone is left gone.

  KEYS[i] job  ARGV[i] the waiter ref giving back its hold on that job

  Events: none.
  Returns: how many holds were given back.
]]
local given = 0
for i = 1, #KEYS do
  if redis.call("EXISTS", KEYS[i]) == 1 and redis.call("HSETNX", KEYS[i], "unheld:" .. ARGV[i], 1) == 1 then
    redis.call("HINCRBY", KEYS[i], "hold", -1)
    given = given + 1
  end
end
return given
