-- Sets minion.dev/run-now to the current time: the operator creates one TaskRun
-- (<config>-manual-<time>) per distinct value and records it in status.handledRunNow.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["minion.dev/run-now"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
