-- ArgoCD health of a minion.dev/v1alpha1 MinionTaskConfig, from status.conditions.
--   status older than the spec (observedGeneration < generation) -> Progressing
--   Degraded=True (degradedAfterFailures runs in a row failed),
--   or Ready=False (invalid config or schedule)                  -> Degraded
--   Suspended=True                                               -> Suspended
--   Ready=True                                                   -> Healthy
--   otherwise                                                    -> Progressing
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil then
  return hs
end
local st = obj.status
if st.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and st.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to see generation " .. obj.metadata.generation
  return hs
end

local conds = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    conds[c.type] = c
  end
end
local function text(c, default)
  if c.message ~= nil and c.message ~= "" then
    return (c.reason or default) .. ": " .. c.message
  end
  return c.reason or default
end

if conds.Degraded ~= nil and conds.Degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = text(conds.Degraded, "Degraded")
  return hs
end
if conds.Ready ~= nil and conds.Ready.status == "False" then
  hs.status = "Degraded"
  hs.message = text(conds.Ready, "Not ready")
  return hs
end
if conds.Suspended ~= nil and conds.Suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = text(conds.Suspended, "Suspended")
  return hs
end
if conds.Ready ~= nil and conds.Ready.status == "True" then
  hs.status = "Healthy"
  local msg = text(conds.Ready, "Ready")
  if st.lastSuccessfulTime ~= nil then
    msg = msg .. "; last success " .. st.lastSuccessfulTime
  end
  if st.consecutiveFailures ~= nil and st.consecutiveFailures > 0 then
    msg = msg .. "; " .. st.consecutiveFailures .. " failed run(s) since"
  end
  if st.nextScheduleTime ~= nil then
    msg = msg .. "; next run " .. st.nextScheduleTime
  end
  hs.message = msg
  return hs
end
return hs
