-- ArgoCD health of a minion.dev/v1alpha1 Table, from status.conditions.
--   status older than the spec (observedGeneration < generation) -> Progressing
--   Degraded=True, or Ready=False (catalog unreachable, bad schema) -> Degraded
--   Ready=True                                                      -> Healthy
--   otherwise                                                       -> Progressing
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
if conds.Ready ~= nil and conds.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(conds.Ready, "Ready")
  return hs
end
return hs
