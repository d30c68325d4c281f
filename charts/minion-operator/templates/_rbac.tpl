{{/*
Generated from operator/src/k8s/rbac.rs: do not edit. Regenerate with
  cargo run -p minion-operator --bin minion-operator -- rbac --chart charts/minion-operator/templates/_rbac.tpl
docs/kubernetes.md (RBAC) has the reason for each rule.
*/}}
{{- define "minion-operator.watchRules" -}}
- apiGroups: ["minion.dev"]
  resources: ["tables", "miniontaskconfigs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["minion.dev"]
  resources: ["taskruns"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["minion.dev"]
  resources: ["tables/status", "miniontaskconfigs/status", "taskruns/status"]
  verbs: ["patch"]
- apiGroups: ["minion.dev"]
  resources: ["miniontaskconfigs/finalizers", "taskruns/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}

{{- define "minion-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ .Values.leaderElection.leaseName | quote }}]
  verbs: ["get", "update"]
{{- end }}

{{- define "minion-operator.userViewRules" -}}
- apiGroups: ["minion.dev"]
  resources: ["tables", "miniontaskconfigs", "taskruns", "tables/status", "miniontaskconfigs/status", "taskruns/status"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{- define "minion-operator.userEditRules" -}}
- apiGroups: ["minion.dev"]
  resources: ["tables", "miniontaskconfigs", "taskruns"]
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
{{- end }}
