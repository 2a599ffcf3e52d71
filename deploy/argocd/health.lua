-- Argo CD health check for sandbox.opensandbox.io/SandboxSnapshot (Lua 5.1, as Argo CD runs it).
-- Install: argocd-cm key resource.customizations.health.sandbox.opensandbox.io_SandboxSnapshot
-- (see argocd-cm.yaml, which carries this file verbatim).
--   Succeed              -> Healthy
--   Failed               -> Degraded, with the Failed condition's reason and message
--   Pending, Committing,
--   no status yet        -> Progressing, with the Ready condition's message when there is one
local hs = {}

local function condition(status, type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local msg = c.message
  if msg == nil or msg == "" then
    msg = fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. msg
  end
  return msg
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the snapshot controller"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if status.observedGeneration ~= nil and generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the snapshot controller to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
if phase == "Succeed" then
  hs.status = "Healthy"
  hs.message = describe(condition(status, "Ready"), "Snapshot images pushed")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(condition(status, "Failed"), "Snapshot failed")
elseif phase == "Pending" or phase == "Committing" then
  hs.status = "Progressing"
  hs.message = describe(condition(status, "Ready"), phase)
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
