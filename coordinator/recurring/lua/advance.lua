--[[
  Record that a beat fired a recurring job's tick: redbeat's meta (the last tick fired) and the
  entry's next run in the schedule. Writes nothing if the entry was removed meanwhile (so a
  removed entry is not brought back); keeps the score written by an update made meanwhile (it
  was computed from the new pattern and limit).

  KEYS[1]  entry      the recurring job's hash
  KEYS[2]  schedule   redbeat's sorted set of entry keys by next run

  ARGV[1]  meta       redbeat's meta JSON (last_run_at)
  ARGV[2]  score      next run (epoch s), or -1: no next run (limit reached, end_date passed)
  ARGV[3]  revision   the entry's revision the beat fired from (bumped by every update)

  Returns: 1 if written, 0 if the entry is gone.
]]
if redis.call("HEXISTS", KEYS[1], "definition") == 0 then return 0 end
redis.call("HSET", KEYS[1], "meta", ARGV[1])
if redis.call("HGET", KEYS[1], "revision") == ARGV[3] then
  redis.call("ZADD", KEYS[2], ARGV[2], KEYS[1])
end
return 1
