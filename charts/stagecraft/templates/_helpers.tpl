{{/* Names, labels and the values several templates derive from. */}}

{{- define "stagecraft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stagecraft.fullname" -}}
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

{{- define "stagecraft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stagecraft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "stagecraft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stagecraft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stagecraft
{{- end }}

{{- define "stagecraft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stagecraft.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Stagecraft image, by digest when one is given. */}}
{{- define "stagecraft.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "stagecraft.runnerImage" -}}
{{- default (include "stagecraft.image" .) .Values.runnerImage }}
{{- end }}

{{/* "true" when the replicas must coordinate through kopf peering. */}}
{{- define "stagecraft.peeringEnabled" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "stagecraft.peeringName" -}}
{{- default (include "stagecraft.fullname" .) .Values.peering.name }}
{{- end }}

{{/* "true" when at least one admission webhook is on: the server, its Service and TLS. */}}
{{- define "stagecraft.webhooksEnabled" -}}
{{- if or .Values.webhooks.validate.enabled .Values.webhooks.gate.enabled }}true{{ end }}
{{- end }}

{{- define "stagecraft.webhookServiceName" -}}
{{- printf "%s-webhook" (include "stagecraft.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stagecraft.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "stagecraft.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stagecraft.certificateName" -}}
{{- printf "%s-webhook" (include "stagecraft.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Which namespaces the webhooks see: never the operator's own (its rollout must not wait for
itself) nor the excluded ones; with watchNamespaces, only those.
*/}}
{{/*
The label selector of the namespaces served, as STAGECRAFT_NAMESPACE_SELECTOR reads it: the
namespaceSelector string, or namespaceLabelSelector written in kubectl's syntax.
*/}}
{{- define "stagecraft.namespaceSelectorText" -}}
{{- $structured := .Values.namespaceLabelSelector | default dict -}}
{{- if and .Values.namespaceSelector (or $structured.matchLabels $structured.matchExpressions) -}}
{{- fail "set namespaceSelector or namespaceLabelSelector, not both" -}}
{{- end -}}
{{- $terms := list -}}
{{- with .Values.namespaceLabelSelector -}}
{{- range $key, $value := .matchLabels -}}
{{- $terms = append $terms (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- range .matchExpressions -}}
{{- if eq .operator "In" -}}
{{- $terms = append $terms (printf "%s in (%s)" .key (join "," .values)) -}}
{{- else if eq .operator "NotIn" -}}
{{- $terms = append $terms (printf "%s notin (%s)" .key (join "," .values)) -}}
{{- else if eq .operator "Exists" -}}
{{- $terms = append $terms .key -}}
{{- else -}}
{{- $terms = append $terms (printf "!%s" .key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- .Values.namespaceSelector | default (join "," $terms) -}}
{{- end -}}

{{- define "stagecraft.webhookNamespaceSelector" -}}
{{- with .Values.namespaceLabelSelector }}
{{- with .matchLabels }}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
matchExpressions:
- key: kubernetes.io/metadata.name
  operator: NotIn
  values:
  {{- range (uniq (prepend .Values.webhooks.excludeNamespaces .Release.Namespace)) }}
  - {{ . | quote }}
  {{- end }}
{{- with .Values.watchNamespaces }}
- key: kubernetes.io/metadata.name
  operator: In
  values:
  {{- range . }}
  - {{ . | quote }}
  {{- end }}
{{- end }}
{{- with .Values.namespaceLabelSelector }}
{{- with .matchExpressions }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}
