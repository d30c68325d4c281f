{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "minion-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name when it already contains the chart name. */}}
{{- define "minion-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "minion-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release (no component: objects add their own). */}}
{{- define "minion-operator.labels" -}}
helm.sh/chart: {{ include "minion-operator.chart" . }}
app.kubernetes.io/name: {{ include "minion-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: minion-operator
{{- end }}

{{/*
Selects the operator's pods and nothing else (subtask pods carry component "worker"); stable across
upgrades, since a Deployment's selector is immutable.
*/}}
{{- define "minion-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "minion-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "minion-operator.serviceAccountName" -}}
{{- default (include "minion-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "minion-operator.workerServiceAccountName" -}}
{{- default (printf "%s-worker" (include "minion-operator.fullname" .) | trunc 63 | trimSuffix "-") .Values.worker.serviceAccount.name }}
{{- end }}

{{- define "minion-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Where the generated CRD YAML is read from: `files/crds/`, written by
`minion-operator crds --out charts/minion-operator/files/crds`. Not Helm's special `crds/`
directory, which Helm installs on its own before templates and never upgrades.
*/}}
{{- define "minion-operator.crdGlob" -}}files/crds/*.yaml{{- end }}

{{/* Fails rendering on value combinations the schema cannot express clearly. */}}
{{- define "minion-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: only the leader may schedule and commit" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.create=false needs serviceAccount.name (an existing ServiceAccount)" }}
{{- end }}
{{- if and (not .Values.worker.serviceAccount.create) (not .Values.worker.serviceAccount.name) }}
{{- fail "worker.serviceAccount.create=false needs worker.serviceAccount.name (an existing ServiceAccount)" }}
{{- end }}
{{- end }}

{{/*
The restricted container securityContext (Pod Security Standard "restricted"). Subtask Jobs get the
same from the operator.
*/}}
{{- define "minion-operator.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Namespaces that get the worker ServiceAccount, as a JSON array without duplicates. */}}
{{- define "minion-operator.workerNamespaces" -}}
{{- concat (list .Release.Namespace) .Values.watchNamespaces .Values.worker.serviceAccount.namespaces | uniq | toJson }}
{{- end }}
