--[[
  Claim one tick of a recurring job, or record that its job was enqueued, so that each tick
  creates one job however many beats fire it (the job id, rep:<key>:<tick ms>, is the second
  guard: enqueueing an existing id adds nothing).

  KEYS[1]  entry   the recurring job's hash (redbeat entry plus the coordinator's fields)

  ARGV[1]  mode    "claim", "done", or "skip" (a claimed tick that created no job: the
                   overlap policy skipped it; it is done but not counted as a run)
  ARGV[2]  tick    the tick's time (ms)
  ARGV[3]  keep    how many recent ticks to remember

  Fields used: runs (ticks claimed), last_tick (ms), limit ("" or N), name, data, opts, paused
  ("1": claim nothing), and ticks: JSON object {tick: 1 claimed | 2 done} of the newest `keep` ticks.

  Returns (claim):
    {"removed"}                                    the entry is gone
    {"paused"}                                     the schedule is paused: nothing claimed
    {"done"}                                       this tick's job was enqueued before
    {"limit", runs}                                the limit was reached by earlier ticks
    {"claimed" | "again", runs, limit, name, data, opts, pending tick, ...}
                                                   enqueue the run ("again": claimed before but
                                                   not known to be enqueued; not counted twice),
                                                   and the runs of older ticks claimed but never
                                                   recorded enqueued (a beat died in between)
  Returns (done, skip): 1, or 0 if the entry is gone.
]]
local key, mode, tick, keep = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call("HEXISTS", key, "opts") == 0 then
  if mode == "done" then return 0 end
  return {"removed"}
end
local ticks = cjson.decode(redis.call("HGET", key, "ticks") or "{}")

if mode == "done" or mode == "skip" then
  if mode == "skip" and ticks[tick] == 1 then redis.call("HINCRBY", key, "runs", -1) end
  ticks[tick] = 2
  redis.call("HSET", key, "ticks", cjson.encode(ticks))
  return 1
end
if redis.call("HGET", key, "paused") == "1" then return {"paused"} end

local f = redis.call("HMGET", key, "runs", "limit", "name", "data", "opts")
local runs = tonumber(f[1]) or 0
local limit = tonumber(f[2]) or 0
if ticks[tick] == 2 then return {"done"} end
local pending = {}
for t, state in pairs(ticks) do
  if state == 1 and t ~= tick then pending[#pending + 1] = t end
end
if ticks[tick] == 1 then return {"again", runs, limit, f[3], f[4], f[5], unpack(pending)} end
if limit > 0 and runs >= limit then return {"limit", runs} end

ticks[tick] = 1
local order = {}
for t in pairs(ticks) do order[#order + 1] = tonumber(t) end
table.sort(order)
for i = 1, #order - keep do ticks[string.format("%d", order[i])] = nil end
runs = redis.call("HINCRBY", key, "runs", 1)
if tonumber(tick) > (tonumber(redis.call("HGET", key, "last_tick")) or 0) then
  redis.call("HSET", key, "last_tick", tick)
end
redis.call("HSET", key, "ticks", cjson.encode(ticks))
return {"claimed", runs, limit, f[3], f[4], f[5], unpack(pending)}
