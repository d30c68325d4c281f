-- ArgoCD health of a minion.dev/v1alpha1 TaskRun.
-- status.phase decides; the Complete/Failed conditions are the fallback when phase is absent.
--   Succeeded, Skipped                       -> Healthy
--   Failed, TimedOut                         -> Degraded
--   Cancelled (spec.cancel, or deleted)      -> Suspended
--   Pending, Planning, Running, Committing   -> Progressing
local hs = { status = "Progressing", message = "Waiting for the operator to plan the run" }
if obj.status == nil then
  return hs
end
local st = obj.status

local function detail(prefix)
  local parts = { prefix }
  if st.progress ~= nil and st.progress ~= "" then
    table.insert(parts, "progress " .. st.progress)
  end
  if st.reason ~= nil and st.reason ~= "" then
    table.insert(parts, st.reason)
  end
  local msg = table.concat(parts, ", ")
  if st.message ~= nil and st.message ~= "" then
    msg = msg .. ": " .. st.message
  end
  return msg
end

local phase = st.phase
if phase == "Succeeded" or phase == "Skipped" then
  hs.status = "Healthy"
  hs.message = detail(phase)
  return hs
end
if phase == "Failed" or phase == "TimedOut" then
  hs.status = "Degraded"
  hs.message = detail(phase)
  return hs
end
if phase == "Cancelled" then
  hs.status = "Suspended"
  hs.message = detail(phase)
  return hs
end
if phase == "Pending" or phase == "Planning" or phase == "Running" or phase == "Committing" then
  hs.status = "Progressing"
  hs.message = detail(phase)
  return hs
end

local function text(c, default)
  if c.message ~= nil and c.message ~= "" then
    return (c.reason or default) .. ": " .. c.message
  end
  return c.reason or default
end

if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type == "Complete" and c.status == "True" then
      hs.status = "Healthy"
      hs.message = text(c, "Complete")
      return hs
    end
    if c.type == "Failed" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = text(c, "Failed")
      return hs
    end
  end
end
if phase ~= nil then
  hs.message = detail("Unknown phase " .. phase)
end
return hs
