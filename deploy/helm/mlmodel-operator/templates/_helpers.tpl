{{/* Names and labels. */}}
{{- define "mlmodel-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlmodel-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlmodel-operator.serviceAccountName" -}}
{{- default (include "mlmodel-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "mlmodel-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mlmodel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlmodel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "mlmodel-operator.labels" -}}
{{ include "mlmodel-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
What the operator does, and nothing more: the rules of deploy/rbac/cluster_role.yaml (a test
checks they are the same). A ClusterRole, or a Role per watched namespace.
*/}}
{{- define "mlmodel-operator.rules" -}}
- apiGroups: ["mlmodel.dev"]
  resources: ["mlmodels"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["mlmodel.dev"]
  resources: ["mlmodels/status"]
  verbs: ["patch"]
- apiGroups: ["mlmodel.dev"]
  resources: ["mlmodels/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims", "services", "configmaps", "pods"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
