-- Argo CD health check for stagecraft.dev/DatabaseMigration
-- (argocd-cm key resource.customizations.health.stagecraft.dev_DatabaseMigration).
--
-- It reads the kstatus conditions the operator writes, Ready, Reconciling and Stalled, the same
-- ones Flux reads as they are. Argo CD runs it in gopher-lua (Lua 5.1) with only the base and
-- table libraries loaded, so it uses no string.* function and no method call on a string.
--
-- Precedence, first match wins:
--   1. no status, or status.observedGeneration below metadata.generation -> Progressing: the
--      conditions describe an older spec, so none of them can be trusted yet;
--   2. Stalled=True     -> Degraded: a person has to act (the condition names the failure);
--   3. Reconciling=True -> Progressing: a migration Job or a retry is in flight;
--   4. Ready=True       -> Healthy: the database is at the target;
--   5. Ready=False with reason WaitingForRunRequest -> Healthy: a manual resource runs nothing
--      until someone asks (`stagecraft migrate run --cluster` or the run-request annotation), and
--      "run on request" is the state it declares, so it has reached it. Not Suspended: in a sync
--      with more than one wave or any hook, Argo CD resolves an applied resource only by Healthy
--      or Degraded; Suspended, like Progressing, would keep the sync operation Running forever
--      (argoproj/argo-cd#29663), and auto-sync then starts no new operation;
--   6. Ready=False with reason WaitingForDeployment -> Healthy: the resource takes its files from
--      a Deployment that does not exist yet, because it sits in an earlier sync wave so that even
--      the Deployment's creation is gated. The wave must end for the Deployment to be created
--      (the gate webhook then pauses it until the migration succeeded), so, for the same reason
--      as 5, anything but Healthy would hang the sync;
--   7. anything else (Ready=False for another reason, such as waiting for a rollout, or Ready
--      missing or Unknown) -> Progressing: the operator is not done, and the wait ends without
--      anyone acting, or the operator will say Stalled.

local hs = {}

local function findCondition(conditions, conditionType)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function isTrue(condition)
  return condition ~= nil and condition.status == "True"
end

-- "Reason: message", so the Argo CD UI shows which failure it is without opening the resource.
local function describe(condition, fallback)
  if condition == nil then
    return fallback
  end
  local message = condition.message
  if message == nil or message == "" then
    message = fallback
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason .. ": " .. message
  end
  return message
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observedGeneration = obj.status.observedGeneration
if generation ~= nil and (observedGeneration == nil or observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local stalled = findCondition(conditions, "Stalled")
local reconciling = findCondition(conditions, "Reconciling")
local ready = findCondition(conditions, "Ready")

if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "the migration needs a person")
  return hs
end

if isTrue(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "migrating")
  return hs
end

if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "the database is at the target")
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason == "WaitingForRunRequest" then
  hs.status = "Healthy"
  hs.message = describe(ready, "waiting for a run request")
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason == "WaitingForDeployment" then
  hs.status = "Healthy"
  hs.message = describe(ready, "waiting for its Deployment to be created")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "waiting for the operator to report the Ready condition")
return hs
