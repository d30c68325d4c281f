-- ArgoCD resource actions of a minion.dev/v1alpha1 MinionTaskConfig.
--   run-now  asks the operator for one run now (the minion.dev/run-now annotation)
--   suspend  stops scheduled runs (spec.suspend: true); runs already started go on
--   resume   starts scheduling again (spec.suspend: false)
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["run-now"] = { ["disabled"] = false }
actions["suspend"] = { ["disabled"] = suspended }
actions["resume"] = { ["disabled"] = not suspended }
return actions
