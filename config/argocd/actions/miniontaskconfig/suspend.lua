-- No new scheduled runs; runs already started go on.
obj.spec.suspend = true
return obj
