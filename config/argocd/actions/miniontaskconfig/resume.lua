-- Scheduled runs start again when due (missedRunPolicy decides about missed fire times).
obj.spec.suspend = false
return obj
