--[[
  Shared functions, prepended to every script by registry/scripts.py.

  emit(): appends an event to the queue's capped stream, in the same step as the move.
  dispatch(): writes the Celery (kombu Redis transport) message of one dispatch of a job onto
  the list of its priority, so a job becomes waiting and publishable in one atomic step.
  The message body carries only the queue, job id and dispatch token; the worker reads the job
  itself from the registry when it starts it.
]]
local function emit(eventsKey, maxLen, event, jobId, ...)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxLen, "*", "event", event, "job_id", jobId, ...)
end

-- A JSON string literal: names from validation.py's charsets are spliced in as they are; anything
-- else (a quote, a backslash, a control character) goes through cjson.
local function jsonString(value)
  if string.find(value, '[%z\1-\31"\\]') then return cjson.encode(value) end
  return '"' .. value .. '"'
end

-- The message is built as text, not with cjson.encode on a table: about half the script's time per
-- job, and the keys that Celery reads with a default when absent (null parent_id, group, eta,
-- expires, callbacks...; correlation_id and reply_to, used by RPC result backends only) are left
-- out, so a waiting job costs less memory. tests/test_message_format.py checks it against the
-- installed kombu and Celery.
local function dispatch(brokerKeys, taskName, celeryQueue, queueName, jobId, token, priority, timeout, traceId)
  local level = tonumber(priority) - 1
  local taskId = jsonString(jobId .. "." .. token)
  local body = '[[],{"queue":' .. jsonString(queueName) .. ',"job_id":' .. jsonString(jobId) ..
    ',"token":' .. token .. '},{}]'
  local extra = ""
  if timeout and timeout ~= "" then
    local soft = tonumber(timeout)
    extra = ',"timelimit":[' .. cjson.encode(soft + 2) .. ',' .. cjson.encode(soft) .. ']'
  end
  if traceId and traceId ~= "" then extra = extra .. ',"trace_id":' .. jsonString(traceId) end
  local message = '{"body":' .. cjson.encode(body) ..
    ',"content-encoding":"utf-8","content-type":"application/json","headers":{"lang":"py","task":' ..
    jsonString(taskName) .. ',"id":' .. taskId .. ',"root_id":' .. taskId ..
    ',"retries":0,"argsrepr":"()","kwargsrepr":"{}","origin":"coordinator","ignore_result":true' .. extra ..
    '},"properties":{"delivery_mode":2,"delivery_info":{"exchange":"","routing_key":' ..
    jsonString(celeryQueue) .. '},"priority":' .. level .. ',"delivery_tag":' ..
    jsonString(queueName .. "/" .. jobId .. "." .. token) .. '}}'
  redis.call("LPUSH", brokerKeys[level + 1], message)
end

-- Make a waiting job reachable: push its message, or park it while the queue is paused.
-- Bumps the dispatch token so that any older message of the job is stale.
local function makeWaiting(jobKey, parkedKey, paused, now, brokerKeys, taskName, celeryQueue, queueName, jobId)
  local token = redis.call("HINCRBY", jobKey, "token", 1)
  if paused then
    redis.call("ZADD", parkedKey, 0, jobId)
    return token
  end
  local fields = redis.call("HMGET", jobKey, "priority", "timeout", "trace")
  dispatch(brokerKeys, taskName, celeryQueue, queueName, jobId, token, fields[1], fields[2], fields[3])
  return token
end

local function sliceKeys(from, count)
  local out = {}
  for i = 0, count - 1 do out[i + 1] = KEYS[from + i] end
  return out
end
