--[[
  Add one or more new jobs to a queue, atomically: record, state index, event, Celery message.

  KEYS[1]      meta          queue hash (must exist: the queue was created)
  KEYS[2]      waiting       index
  KEYS[3]      delayed       index
  KEYS[4]      parked        waiting jobs held while the queue is paused
  KEYS[5]      events        stream
  KEYS[6..15]  broker lists  kombu lists of priority levels 0..9
  KEYS[16..]   job keys      one per job, in ARGV order
  then, when some jobs are deduplicated: the metrics hash, then one dedup record per entry
  then the 12 group records (QueueKeys.group_keys)

  ARGV[1] now (ms)  ARGV[2] task name  ARGV[3] celery queue  ARGV[4] queue name
  ARGV[5] events max length  ARGV[6] lease (ms) of a group's concurrency slot
  then 14 per job: id, name, data, opts, priority, due (ms, 0 = now), timeout (s or ""),
                   trace id, max retries (not stored: opts has them), schedule key,
                   created (ms, 0 = now), start deadline (ms, 0 = none), group (""), limits
                   (comma-separated names, "")
  then the dedup entries: when there are none, "0"; else the job key prefix, 5 per entry
  (position of its job, 0-based; key label; mode: until_finished | ttl | debounce; ttl ms (0:
  none); keep: last | first), and last their number (see dedupEntries in _lib.lua)
  Job hash fields written: name data opts priority state attempts token created, and timeout,
  trace, schedule, expires, dedup, group, limits when set (`stalled` appears with the first stall).
  A grouped waiting job waits in its group (_groups.lua); the round-robin then releases what
  the window allows.

  Deduplication: a job whose key another job holds is not written (dedupCheck); a debounce
  call pushes the standing job's start back (and replaces its data with keep "last"). The
  standing job's hash is read through the job key prefix, not KEYS: it shares the queue's hash
  tag, so it is on this node of a Redis Cluster (tests/scaleout/test_cluster_dedup.py).
  Events: waiting or delayed, per job added; deduplicated (on the standing job) per job not added
  for its key, and delayed for a waiting job a debounce sends back.
  Returns: -1 if the queue does not exist; {-2, group} if the jobs would take a group past its
  max_size (nothing written); else a list with 1 for each job added, 0 for each job whose id
  existed already (nothing is written for those) and, for each job deduplicated, the id of the
  job that stands (a string).
]]
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
local now = tonumber(ARGV[1])
local maxLen = ARGV[5]
local paused = redis.call("HGET", KEYS[1], "paused") == "1"
local brokerKeys = sliceKeys(6, 10)
local added = {}
local per, base = 14, 6
local dedupCount = tonumber(ARGV[#ARGV])
local count = (#ARGV - base - 1 - (dedupCount > 0 and 1 + DEDUP_PER * dedupCount or 0)) / per
local dedupAt = {}
if dedupCount > 0 then
  dedupAt = dedupEntries(base + 1 + count * per, 16 + count, dedupCount,
    {waiting = KEYS[2], delayed = KEYS[3], parked = KEYS[4], events = KEYS[5], maxLen = maxLen})
end
local g = groupKeys(#KEYS - 11)
-- groups: refuse the whole call (nothing written) when a group would pass its max_size
local adding, grouped = {}, false
for i = 0, count - 1 do
  local group = ARGV[base + i * per + 13]
  if group ~= "" and redis.call("EXISTS", KEYS[16 + i]) == 0 then
    adding[group] = (adding[group] or 0) + 1
    grouped = true
  end
end
for group, n in pairs(adding) do
  local raw = redis.call("HGET", g.configs, group)
  local maxSize = raw and cjson.decode(raw).max_size
  if type(maxSize) == "number" and tonumber(redis.call("HGET", g.sizes, group) or "0") + n > maxSize then
    return {-2, group}
  end
end
for i = 0, count - 1 do
  local a = base + i * per
  local jobId, jobKey = ARGV[a + 1], KEYS[16 + i]
  local d = dedupAt[i]
  if redis.call("EXISTS", jobKey) == 1 then
    added[i + 1] = 0
  elseif d then
    local standing = dedupCheck(d, now, ARGV[a + 3])
    if standing then added[i + 1] = standing else dedupTake(d, jobKey, jobId) end
  end
  if added[i + 1] == nil then
    local due = tonumber(ARGV[a + 6])
    local state = "waiting"
    local createdAt = tonumber(ARGV[a + 11])
    if createdAt == 0 then createdAt = now end
    if due > now then state = "delayed" end
    -- a waiting job gets dispatch token 1 here, as makeWaiting would give it, without reading it back
    local token = 0
    if state == "waiting" then token = 1 end
    -- Fields left empty are not written (readers default them; max retries live in opts): each
    -- field of a job hash costs ~60 bytes once the data makes it a hashtable.
    redis.call("HSET", jobKey, "name", ARGV[a + 2], "data", ARGV[a + 3], "opts", ARGV[a + 4],
      "priority", ARGV[a + 5], "state", state, "attempts", 0, "token", token, "created", createdAt)
    if ARGV[a + 7] ~= "" then redis.call("HSET", jobKey, "timeout", ARGV[a + 7]) end
    if ARGV[a + 8] ~= "" then redis.call("HSET", jobKey, "trace", ARGV[a + 8]) end
    if ARGV[a + 10] ~= "" then redis.call("HSET", jobKey, "schedule", ARGV[a + 10]) end
    if ARGV[a + 12] ~= "0" then redis.call("HSET", jobKey, "expires", ARGV[a + 12]) end
    local group = ARGV[a + 13]
    if group ~= "" then redis.call("HSET", jobKey, "group", group) end
    if ARGV[a + 14] ~= "" then redis.call("HSET", jobKey, "limits", ARGV[a + 14]) end
    if state == "delayed" then
      redis.call("ZADD", KEYS[3], due, jobId)
      emitJob(KEYS[5], maxLen, "delayed", jobKey, jobId, "due", due)
    else
      redis.call("ZADD", KEYS[2], waitingScore(KEYS[1], now), jobId)
      if group ~= "" then
        enterGroup(g, jobKey, jobId, group, ARGV[a + 5], now, celeryMessage(ARGV[2], ARGV[3], ARGV[4], jobId, 1,
          ARGV[a + 5], ARGV[a + 7], ARGV[a + 8], ARGV[a + 2], ARGV[a + 3]))
      elseif paused then
        redis.call("ZADD", KEYS[4], 0, jobId)
      else
        dispatch(brokerKeys, ARGV[2], ARGV[3], ARGV[4], jobId, 1, ARGV[a + 5], ARGV[a + 7], ARGV[a + 8],
          ARGV[a + 2], ARGV[a + 3])
      end
      emitJob(KEYS[5], maxLen, "waiting", jobKey, jobId)
    end
    added[i + 1] = 1
  end
end
if grouped then releaseGroups(g, KEYS[1], now, tonumber(ARGV[6]), brokerKeys, false) end
return added
