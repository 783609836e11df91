--[[
  Release grouped jobs to the broker round-robin while the queue's group window has room (see
  _groups.lua); first let one group (re)join the rotation: resumed, or its config changed.
  Run after a grouped job was received, finished or cancelled, by the workers' sweep (rate-limit
  windows that ended, leases that expired), and by resume_group / set_group_config.

  KEYS[1] meta  KEYS[2..11] broker lists  KEYS[12..23] group records (QueueKeys.group_keys)

  ARGV[1] now (ms)  ARGV[2] lease (ms)  ARGV[3] a group to (re)join ("")

  Events: none (the jobs stay waiting).
  Returns: the number of jobs released.
]]
local g = groupKeys(12)
local group = ARGV[3]
if group ~= "" and redis.call("HEXISTS", g.counts, group) == 1 then joinRotation(g, group) end
return releaseGroups(g, KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), sliceKeys(2, 10), true)
