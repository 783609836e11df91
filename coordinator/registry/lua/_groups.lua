--[[
  Groups and concurrency caps: shared functions, prepended after _lib.lua to every script by
  registry/scripts.py. The records are described in coordinator/keys.py (QueueKeys.group_*,
  slots, capped; CoordinatorKeys.limiter_slots) and owned in Python by coordinator/groups.py.

  A grouped waiting job is not in the broker: its Celery message waits in the group's index
  (priority first, then enqueue time) until releaseGroups() pushes it, taking the groups of the
  rotation in turn (stride scheduling: a group served one job moves 1/weight on), skipping
  paused groups, groups at their concurrency and groups over their rate limit, and keeping at
  most the queue's `group_window` (its meta hash) grouped messages released and not yet received by a worker.

  Concurrency caps (the queue's `concurrency`, named limiters, a group's `concurrency`) are
  leases: a sorted set of lease member -> expiry (ms), taken when a job starts (or, for a group,
  when it is released), renewed with the job's lock, dropped when the attempt ends; a dead
  worker's leases expire with its locks.
]]
local NUL = "\0"

-- The group records from KEYS[from .. from + 11], in the order of QueueKeys.group_keys.
local function groupKeys(from)
  return {configs = KEYS[from], paused = KEYS[from + 1], waiting = KEYS[from + 2], messages = KEYS[from + 3],
    counts = KEYS[from + 4], rotation = KEYS[from + 5], held = KEYS[from + 6], window = KEYS[from + 7],
    slots = KEYS[from + 8], active = KEYS[from + 9], rates = KEYS[from + 10], sizes = KEYS[from + 11]}
end

local function groupOf(member)
  return string.match(member, "^([^%z]*)%z")
end

-- A group with waiting jobs joins the rotation (unless paused or held by its rate limit), at
-- the pass of the rotation's head: it is served within the current round.
local function joinRotation(g, group)
  if redis.call("SISMEMBER", g.paused, group) == 1 or redis.call("ZSCORE", g.held, group) then return end
  local head = redis.call("ZRANGE", g.rotation, 0, 0, "WITHSCORES")
  redis.call("ZADD", g.rotation, "NX", head[2] or "0", group)
end

local function decrementField(hashKey, field)
  if redis.call("HINCRBY", hashKey, field, -1) <= 0 then redis.call("HDEL", hashKey, field) end
end

-- Put a grouped waiting job (dispatch `token` of it) in its group's index, with its message.
local function enterGroup(g, jobKey, jobId, group, priority, now, message)
  local member = group .. NUL .. string.format("%02d", tonumber(priority)) .. NUL ..
    string.format("%017.3f", tonumber(now)) .. NUL .. jobId
  redis.call("ZADD", g.waiting, 0, member)
  redis.call("HSET", g.messages, jobId, (tonumber(priority) - 1) .. message)
  redis.call("HINCRBY", g.counts, group, 1)
  redis.call("HINCRBY", g.sizes, group, 1)
  redis.call("HSET", jobKey, "gmember", member)
  joinRotation(g, group)
end

-- Take a job out of its group's index (cancel, re-prioritise); true if it was there.
local function leaveGroup(g, jobKey, jobId)
  redis.call("ZREM", g.window, jobId)
  local member = redis.call("HGET", jobKey, "gmember")
  if not member then return false end
  redis.call("HDEL", jobKey, "gmember")
  if redis.call("ZREM", g.waiting, member) == 0 then return false end
  redis.call("HDEL", g.messages, jobId)
  decrementField(g.counts, groupOf(member))
  return true
end

-- moveToWaiting's q.toGroup for the scripts that make jobs waiting again (promote, retry,
-- recover_stalled): a grouped job gets a new dispatch token and waits in its group.
local function groupRouter(g, q)
  return function(jobKey, jobId, now)
    local f = redis.call("HMGET", jobKey, "group", "priority", "timeout", "trace", "name", "data")
    if not f[1] then return nil end
    local token = redis.call("HINCRBY", jobKey, "token", 1)
    local priority = f[2] or "5"
    enterGroup(g, jobKey, jobId, f[1], priority, now,
      celeryMessage(q.task, q.celeryQueue, q.queue, jobId, token, priority, f[3], f[4], f[5], f[6]))
    return token
  end
end

-- Free one group lease (`<group>\0<job id>`); the group may be served again.
local function freeGroupSlot(g, member)
  if redis.call("ZREM", g.slots, member) == 1 then
    local group = groupOf(member)
    decrementField(g.active, group)
    if redis.call("HEXISTS", g.counts, group) == 1 then joinRotation(g, group) end
  end
end

local function groupConfig(g, cache, group)
  local conf = cache[group]
  if conf == nil then
    local raw = redis.call("HGET", g.configs, group)
    conf = false
    if raw then conf = cjson.decode(raw) end
    cache[group] = conf
  end
  return conf
end

local function number(value)
  if type(value) == "number" then return value end
  return nil
end

-- A grouped job starts (it no longer counts in its group's size): its group lease (taken at release) is renewed, or
-- taken again if it expired while the message waited in the broker.
local function groupStarted(g, jobId, group, now, leaseMs)
  decrementField(g.sizes, group)
  local conf = groupConfig(g, {}, group)
  if conf and number(conf.concurrency) then
    if redis.call("ZADD", g.slots, now + leaseMs, group .. NUL .. jobId) == 1 then
      redis.call("HINCRBY", g.active, group, 1)
    end
  end
end

-- Whether a group may be served now; a blocked group leaves the rotation (a rate-limited one
-- is held until its window ends). Returns ok, and the rate counter to write on release.
local function groupOpen(g, conf, group, now)
  if redis.call("SISMEMBER", g.paused, group) == 1 then return false end
  if not conf then return true end
  local concurrency = number(conf.concurrency)
  if concurrency and tonumber(redis.call("HGET", g.active, group) or "0") >= concurrency then return false end
  local limiter = conf.limiter
  if type(limiter) ~= "table" then return true end
  local start = now - now % limiter.duration
  local count = 0
  local cur = redis.call("HGET", g.rates, group)
  if cur then
    local s, n = string.match(cur, "^(%d+):(%d+)$")
    if tonumber(s) == start then count = tonumber(n) end
  end
  if count >= limiter.max then
    redis.call("ZADD", g.held, start + limiter.duration, group)
    return false
  end
  return true, start .. ":" .. (count + 1)
end

-- Release grouped jobs to the broker round-robin while the window has room; returns how many.
-- With `expire`, first drop what outlived a lease: window entries (lost messages, which the
-- sweeps recover), group leases, rate-limit holds (an enqueue leaves that to the others).
local function releaseGroups(g, metaKey, now, leaseMs, brokerKeys, expire)
  local meta = redis.call("HMGET", metaKey, "paused", "group_window")
  if meta[1] == "1" then return 0 end
  local windowMax = tonumber(meta[2] or "32")
  if expire then
    redis.call("ZREMRANGEBYSCORE", g.window, "-inf", now - leaseMs)
    for _, member in ipairs(redis.call("ZRANGEBYSCORE", g.slots, "-inf", now, "LIMIT", 0, 100)) do
      freeGroupSlot(g, member)
    end
    for _, group in ipairs(redis.call("ZRANGEBYSCORE", g.held, "-inf", now, "LIMIT", 0, 100)) do
      redis.call("ZREM", g.held, group)
      if redis.call("HEXISTS", g.counts, group) == 1 then joinRotation(g, group) end
    end
  end
  local room = windowMax - redis.call("ZCARD", g.window)
  local released, cache = 0, {}
  while room > 0 do
    local head = redis.call("ZRANGE", g.rotation, 0, 0, "WITHSCORES")
    if #head == 0 then break end
    local group, pass = head[1], tonumber(head[2])
    local conf = groupConfig(g, cache, group)
    local open, rate = groupOpen(g, conf, group, now)
    local first = {}
    if open then
      first = redis.call("ZRANGEBYLEX", g.waiting, "[" .. group .. NUL, "(" .. group .. "\1", "LIMIT", 0, 1)
    end
    if #first == 0 then
      redis.call("ZREM", g.rotation, group)
    else
      local member = first[1]
      local jobId = string.match(member, "%z([^%z]*)$")
      redis.call("ZREM", g.waiting, member)
      decrementField(g.counts, group)
      local message = redis.call("HGET", g.messages, jobId)
      if message then
        redis.call("HDEL", g.messages, jobId)
        local level = tonumber(string.sub(message, 1, 1)) + 1
        redis.call("LPUSH", brokerKeys[level], string.sub(message, 2))
        redis.call("ZADD", g.window, now, jobId)
        if conf and number(conf.concurrency) then
          redis.call("ZADD", g.slots, now + leaseMs, group .. NUL .. jobId)
          redis.call("HINCRBY", g.active, group, 1)
        end
        if rate then redis.call("HSET", g.rates, group, rate) end
        released, room = released + 1, room - 1
      end
      if redis.call("HEXISTS", g.counts, group) == 1 then
        redis.call("ZADD", g.rotation, pass + 1 / ((conf and number(conf.weight)) or 1), group)
      else
        redis.call("ZREM", g.rotation, group)
      end
    end
  end
  return released
end

-- Leases of concurrency caps. `caps`: list of {key, member, max, name}. Takes a lease of every cap
-- and returns nil, or returns the position of the first full cap and takes none.
local function takeLeases(caps, now, leaseMs)
  for i, cap in ipairs(caps) do
    redis.call("ZREMRANGEBYSCORE", cap[1], "-inf", now)
    if not redis.call("ZSCORE", cap[1], cap[2]) and redis.call("ZCARD", cap[1]) >= cap[3] then return i end
  end
  for _, cap in ipairs(caps) do redis.call("ZADD", cap[1], now + leaseMs, cap[2]) end
  return nil
end

-- The caps of a script: keys KEYS[from..], and ARGV[argFrom..] (name, lease member, max per cap).
local function capsFrom(from, argFrom)
  local caps = {}
  for i = 0, #KEYS - from do
    local a = argFrom + 3 * i
    caps[i + 1] = {KEYS[from + i], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a]}
  end
  return caps
end

local function dropLeases(caps)
  for _, cap in ipairs(caps) do redis.call("ZREM", cap[1], cap[2]) end
end
