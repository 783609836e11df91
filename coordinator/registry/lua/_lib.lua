--[[
  Shared functions, prepended to every script by registry/scripts.py.

  emit(): appends an event to the queue's capped stream, in the same step as the move.
  emitJob(): the same for an event of one job, adding the job's trace id when it has one.
  dispatch(): writes the Celery (kombu Redis transport) message of one dispatch of a job onto
  the list of its priority, so a job becomes waiting and publishable in one atomic step.
  The message body carries only the queue, job id and dispatch token; the worker reads the job
  itself from the registry when it starts it.
  expire(): ends a job whose start deadline (`expires`) passed before it could start.
  dedupEntries() / dedupCheck() / dedupTake() / dedupRelease(): deduplication keys.
  countOutcome() / countDuration() / countDeduplicated(): the only writers of a queue's metrics
  hash in Lua; its fields are described (and read) in coordinator/metrics.py.
]]
local function emit(eventsKey, maxLen, event, jobId, ...)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxLen, "*", "event", event, "job_id", jobId, ...)
end

local function emitJob(eventsKey, maxLen, event, jobKey, jobId, ...)
  local trace = redis.call("HGET", jobKey, "trace")
  if trace and trace ~= "" then
    emit(eventsKey, maxLen, event, jobId, "trace_id", trace, ...)
  else
    emit(eventsKey, maxLen, event, jobId, ...)
  end
end

-- The Celery task id of one dispatch of a job, and its kombu delivery tag: the contract with
-- coordinator/dispatch.py, which builds and parses them on the Python side.
local function taskId(jobId, token)
  return jobId .. "." .. token
end

local function deliveryTag(celeryQueue, dispatchId)
  return celeryQueue .. "/" .. dispatchId
end

-- W3C trace context of one dispatch: the trace id (taken as is when it is 32 hex digits, else
-- hashed to that form) and a parent span id derived from job id and token, so OpenTelemetry's
-- Celery instrumentation in the worker joins the job's trace.
local function traceparent(traceId, jobId, token)
  local traceHex = string.lower(traceId)
  if #traceHex ~= 32 or not string.match(traceHex, "^%x+$") then
    traceHex = string.sub(redis.sha1hex(traceId), 1, 32)
  end
  return "00-" .. traceHex .. "-" .. string.sub(redis.sha1hex(taskId(jobId, token)), 1, 16) .. "-01"
end

-- True if a string needs no escaping inside a JSON string literal (no quote, backslash, control):
-- the names that validation.py's charsets let through never do.
local function isPlain(value)
  return not string.find(value, '[%z\1-\31"\\]')
end

-- A JSON string literal: a plain name as it is, anything else through cjson.
local function jsonString(value)
  if isPlain(value) then return '"' .. value .. '"' end
  return cjson.encode(value)
end

-- The message is built as text, not with cjson.encode on a table (that took about half the
-- script's time per job), and the keys that Celery reads with a default when absent (null
-- parent_id, group, eta, expires, callbacks...; correlation_id and reply_to, used by RPC result
-- backends only; kwargsrepr and origin, shown in logs and events only (argsrepr stays: Flower
-- shows the job's data through it); delivery_mode,
-- which the Redis transport ignores and the outbox relay sets itself) are left out, so a waiting
-- job costs less memory. tests/test_message_format.py
-- checks the result against the installed kombu and Celery.
local plainQueue = {}  -- task name -> are the queue's names free of characters JSON escapes

-- What Celery's events (and Flower) show of a job: its name (Celery's ``shadow``) and the
-- start of its data as the task's arguments, cut on a UTF-8 character boundary.
local ARGSREPR_MAX = 256
local function argsRepr(data)
  if not data or data == "" then return '"()"' end
  if #data > ARGSREPR_MAX then
    local cut = ARGSREPR_MAX
    while cut > 0 and string.byte(data, cut + 1) >= 128 and string.byte(data, cut + 1) < 192 do cut = cut - 1 end
    data = string.sub(data, 1, cut) .. "..."
  end
  return jsonString(data)
end

-- The Celery message of one dispatch of a job (dispatch() pushes it; a grouped job's waits in
-- its group until the round-robin releases it, see _groups.lua).
local function celeryMessage(taskName, celeryQueue, queueName, jobId, token, priority, timeout, traceId,
                             jobName, data)
  local level = tonumber(priority) - 1
  local id = taskId(jobId, token)
  local extra = ""
  if timeout and timeout ~= "" then
    local soft = tonumber(timeout)
    extra = ',"timelimit":[' .. cjson.encode(soft + 2) .. ',' .. cjson.encode(soft) .. ']'
  end
  if jobName and jobName ~= "" then
    extra = extra .. ',"shadow":' .. jsonString(jobName)
  end
  if traceId and traceId ~= "" then
    extra = extra .. ',"trace_id":' .. jsonString(traceId) .. ',"traceparent":"' .. traceparent(traceId, jobId, token) .. '"'
  end
  local plain = plainQueue[taskName]
  if plain == nil then
    plain = isPlain(taskName) and isPlain(celeryQueue) and isPlain(queueName)
    plainQueue[taskName] = plain
  end
  local message
  if plain and isPlain(jobId) then
    -- the common case: every name spliced in as it is (the body is a JSON string: quotes escaped)
    message = '{"body":"[[],{\\"queue\\":\\"' .. queueName .. '\\",\\"job_id\\":\\"' .. jobId ..
      '\\",\\"token\\":' .. token .. '},{}]","content-encoding":"utf-8","content-type":"application/json",' ..
      '"headers":{"lang":"py","task":"' .. taskName .. '","id":"' .. id .. '","root_id":"' .. id ..
      '","retries":0,"argsrepr":' .. argsRepr(data) .. ',"ignore_result":true' .. extra ..
      '},"properties":{"delivery_info":{"exchange":"","routing_key":"' .. celeryQueue ..
      '"},"priority":' .. level .. ',"delivery_tag":"' .. deliveryTag(celeryQueue, id) .. '"}}'
  else
    local body = '[[],{"queue":' .. jsonString(queueName) .. ',"job_id":' .. jsonString(jobId) ..
      ',"token":' .. token .. '},{}]'
    message = '{"body":' .. cjson.encode(body) ..
      ',"content-encoding":"utf-8","content-type":"application/json","headers":{"lang":"py","task":' ..
      jsonString(taskName) .. ',"id":' .. jsonString(id) .. ',"root_id":' .. jsonString(id) ..
      ',"retries":0,"argsrepr":' .. argsRepr(data) .. ',"ignore_result":true' .. extra ..
      '},"properties":{"delivery_info":{"exchange":"","routing_key":' ..
      jsonString(celeryQueue) .. '},"priority":' .. level .. ',"delivery_tag":' ..
      jsonString(deliveryTag(celeryQueue, id)) .. '}}'
  end
  return message
end

local function dispatch(brokerKeys, taskName, celeryQueue, queueName, jobId, token, priority, timeout, traceId,
                        jobName, data)
  local level = tonumber(priority)
  redis.call("LPUSH", brokerKeys[level], celeryMessage(taskName, celeryQueue, queueName, jobId, token,
    priority, timeout, traceId, jobName, data))
end

-- Make a waiting job reachable: push its message, or park it while the queue is paused.
-- Bumps the dispatch token so that any older message of the job is stale.
local function makeWaiting(jobKey, parkedKey, paused, now, brokerKeys, taskName, celeryQueue, queueName, jobId)
  local token = redis.call("HINCRBY", jobKey, "token", 1)
  if paused then
    redis.call("ZADD", parkedKey, 0, jobId)
    return token
  end
  local fields = redis.call("HMGET", jobKey, "priority", "timeout", "trace", "name", "data")
  -- a record without a priority (written by an older version's signal tracking) gets the default
  dispatch(brokerKeys, taskName, celeryQueue, queueName, jobId, token, fields[1] or "5", fields[2], fields[3],
           fields[4], fields[5])
  return token
end

-- Score of a job entering the waiting index: its time (ms), made strictly increasing per queue
-- so that jobs enqueued within one millisecond keep their order.
local function waitingScore(metaKey, now)
  local last = tonumber(redis.call("HGET", metaKey, "last_waiting") or "0")
  local score = math.max(tonumber(now), last + 0.001)
  local text = string.format("%.3f", score)
  redis.call("HSET", metaKey, "last_waiting", text)
  return text
end

-- A job finished for good as kind "c" (completed) or "f" (failed) in minute bucket `minute`.
local function countOutcome(metricsKey, minute, kind)
  redis.call("HINCRBY", metricsKey, minute .. ":" .. kind, 1)
  redis.call("HINCRBY", metricsKey, "all:" .. kind, 1)
end

-- An enqueue returned the job that stands for its dedup key instead of adding one.
local function countDeduplicated(metricsKey)
  redis.call("HINCRBY", metricsKey, "all:d", 1)
end

-- The processing time (ms) of a finished attempt, and its histogram bucket field.
local function countDuration(metricsKey, minute, durationMs, bucketField)
  redis.call("HINCRBY", metricsKey, minute .. ":t", durationMs)
  redis.call("HINCRBY", metricsKey, "all:t", durationMs)
  redis.call("HINCRBY", metricsKey, bucketField, 1)
end

-- Move a job to waiting: index it, mark it, dispatch its message (or park it while the queue is
-- paused) and emit "waiting" with any extra fields. `q` describes the queue:
-- {waiting, meta, parked, events = keys; maxLen; paused; brokerKeys; task, celeryQueue, queue}.
local function moveToWaiting(q, jobKey, jobId, now, ...)
  redis.call("ZADD", q.waiting, waitingScore(q.meta, now), jobId)
  redis.call("HSET", jobKey, "state", "waiting")
  -- q.toGroup (see _groups.lua): a grouped job waits in its group instead (nil for any other job)
  local token = q.toGroup and q.toGroup(jobKey, jobId, now)
  if not token then
    token = makeWaiting(jobKey, q.parked, q.paused, now, q.brokerKeys, q.task, q.celeryQueue, q.queue, jobId)
  end
  emitJob(q.events, q.maxLen, "waiting", jobKey, jobId, ...)
  return token
end

local function sliceKeys(from, count)
  local out = {}
  for i = 0, count - 1 do out[i + 1] = KEYS[from + i] end
  return out
end

-- Flows: when a finished job has waiters (a parent, a dependent job, a batch), record its outcome
-- in the queue's flow box in the same step as the move; the waiters' side applies it (the
-- hand-off, see coordinator/flows/handoff.py and flow_settle.lua). Returns {field, entry} of
-- the flow box entry written (field <job id>:<token>), or nil when the job has no waiters.
local function handOff(dependentsKey, flowboxKey, jobId, token, outcome, value, now)
  local waiters = redis.call("HGETALL", dependentsKey)
  if #waiters == 0 then return nil end
  local field = jobId .. ":" .. token
  local entry = cjson.encode({c = jobId, o = outcome, v = value, t = tonumber(now), w = waiters})
  redis.call("HSET", flowboxKey, field, entry)
  return {field, entry}
end

-- A script's reply after a move that may have handed off: 1, or {1, field, entry}.
local function doneReply(handed)
  if handed then return {1, handed[1], handed[2]} end
  return 1
end

--[[
  Deduplication (the records and their life are described in coordinator/dedup.py).
  A dedup record is a string <queue base>:dedup:<key> holding the id of the job that stands for
  the key. enqueue.lua receives the records in KEYS; the job it names is read through the job key
  prefix it is given (the same cluster slot: every key of a queue shares its hash tag), and a job
  that holds a record keeps the record's name in its "dedup" field, read back by the scripts
  that end the job (dedupRelease), which free the record only while it still names that job.
]]
local DEDUP_PER = 5  -- ARGV per deduplicated job: position, key label, mode, ttl (ms), keep

-- The dedup entries of one enqueue.lua call, by job position (0-based): ARGV from `argFrom`
-- (the job key prefix, then DEDUP_PER per entry), KEYS from `keyFrom` (metrics, then one record
-- per entry). `q` holds the queue keys and the events max length the entries share.
local function dedupEntries(argFrom, keyFrom, n, q)
  q.jobKeyPrefix, q.metrics = ARGV[argFrom], KEYS[keyFrom]
  local entries = {}
  for j = 0, n - 1 do
    local a = argFrom + 1 + j * DEDUP_PER
    entries[tonumber(ARGV[a])] = {record = KEYS[keyFrom + 1 + j], label = ARGV[a + 1], mode = ARGV[a + 2],
      ttl = tonumber(ARGV[a + 3]), keepFirst = ARGV[a + 4] == "first", q = q}
  end
  return entries
end

-- Debounce: the standing job, not started yet, starts ttl ms from now; with keep "last" it
-- runs with the new data. A waiting job goes back to delayed: its token is bumped, so the
-- message already sent for it is stale.
local function dedupDebounce(d, standingKey, standing, state, now, data)
  local q, due = d.q, now + d.ttl
  if not d.keepFirst then redis.call("HSET", standingKey, "data", data) end
  if state == "waiting" then
    redis.call("ZREM", q.waiting, standing)
    redis.call("ZREM", q.parked, standing)
    redis.call("HINCRBY", standingKey, "token", 1)
    redis.call("HSET", standingKey, "state", "delayed")
    emitJob(q.events, q.maxLen, "delayed", standingKey, standing, "due", due)
  end
  redis.call("ZADD", q.delayed, due, standing)
  return due
end

-- The id of the job that stands for entry `d`'s key, after applying the call to it (debounce),
-- emitting "deduplicated" and counting it; nil when the key is free for the new job: no record,
-- or (until_finished, debounce) the job it names is gone or final, or (debounce) has started.
local function dedupCheck(d, now, data)
  local standing = redis.call("GET", d.record)
  if not standing then return nil end
  local q = d.q
  local standingKey = q.jobKeyPrefix .. standing
  local extra = {}
  if d.mode ~= "ttl" then
    local cur = redis.call("HMGET", standingKey, "state", "attempts")
    local state = cur[1]
    if not state or state == "completed" or state == "failed" or state == "cancelled" then return nil end
    if d.mode == "debounce" then
      if (state ~= "waiting" and state ~= "delayed") or cur[2] ~= "0" then return nil end
      extra = {"due", dedupDebounce(d, standingKey, standing, state, now, data)}
    end
  end
  countDeduplicated(q.metrics)
  emitJob(q.events, q.maxLen, "deduplicated", standingKey, standing, "key", d.label, "mode", d.mode, unpack(extra))
  return standing
end

-- The new job takes the key: until_finished and debounce until it ends (released by
-- dedupRelease; until_finished with a ttl also lapses then), ttl for ttl ms.
local function dedupTake(d, jobKey, jobId)
  if d.ttl > 0 and d.mode ~= "debounce" then
    redis.call("SET", d.record, jobId, "PX", d.ttl)
  else
    redis.call("SET", d.record, jobId)
  end
  if d.mode ~= "ttl" then redis.call("HSET", jobKey, "dedup", d.record) end
end

-- A job ends (completed, failed for good, cancelled, expired): free its dedup record, if it
-- holds one that still names it. `record`: the job's "dedup" field, when the caller read it.
local function dedupRelease(jobKey, jobId, record)
  if record == nil then record = redis.call("HGET", jobKey, "dedup") end
  if record and redis.call("GET", record) == jobId then redis.call("DEL", record) end
end

-- A job past its start deadline (its "expires" field, epoch ms) ends cancelled with reason
-- "expired" instead of starting. The caller has already taken it out of its state index; the
-- token is bumped so that any message of the job still in the broker is stale. A job with flow
-- waiters hands them its end (applied by the workers' sweep).
local function expire(jobKey, jobId, cancelledKey, eventsKey, maxLen, now, from, dependentsKey, flowboxKey)
  local token = redis.call("HINCRBY", jobKey, "token", 1)
  redis.call("HSET", jobKey, "state", "cancelled", "finished", now, "reason", "expired")
  dedupRelease(jobKey, jobId)
  redis.call("ZADD", cancelledKey, now, jobId)
  emitJob(eventsKey, maxLen, "cancelled", jobKey, jobId, "from", from, "reason", "expired")
  handOff(dependentsKey, flowboxKey, jobId, token, "cancelled", "expired", now)
end

