-- Argo CD health check for geneva.lancedb.com/GenevaBackfill.
-- Installed as resource.customizations.health.geneva.lancedb.com_GenevaBackfill (argocd-cm-patch.yaml).
-- Argo CD runs it with gopher-lua (Lua 5.1): no integer division, no goto, no string.format("%d")
-- on fractional numbers. JSON numbers arrive as Lua numbers, absent/null fields as nil.
--
--   Healthy     phase Succeeded
--   Progressing no status yet, status not yet for the current spec (observedGeneration < generation),
--               phase Pending / Provisioning / Running (or none yet)
--   Degraded    phase Failed, with status.message (else the Failed condition's message, else reason)
--   Suspended   phase Suspended (spec.suspend: true)
--   Unknown     any other phase (an operator newer than this script)
hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function nonempty(s)
  return s ~= nil and s ~= ""
end

local function progress_text(status)
  local p = status.progress
  if p == nil or p.percent == nil then
    return ""
  end
  local text = " (" .. tostring(math.floor(p.percent)) .. "%"
  if nonempty(status.rows) then
    text = text .. ", " .. status.rows .. " rows"
  end
  return text .. ")"
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(math.floor(generation))
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = nonempty(status.message) and status.message or ("Backfill complete" .. progress_text(status))
elseif phase == "Failed" then
  hs.status = "Degraded"
  local failed = condition(status, "Failed")
  if nonempty(status.message) then
    hs.message = status.message
  elseif failed ~= nil and nonempty(failed.message) then
    hs.message = failed.message
  elseif nonempty(status.reason) then
    hs.message = status.reason
  else
    hs.message = "Backfill failed"
  end
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = nonempty(status.message) and status.message or "Backfill suspended"
elseif phase == nil or phase == "Pending" or phase == "Provisioning" or phase == "Running" then
  hs.status = "Progressing"
  local text = phase or "Pending"
  if nonempty(status.message) then
    text = text .. ": " .. status.message
  end
  hs.message = text .. progress_text(status)
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
