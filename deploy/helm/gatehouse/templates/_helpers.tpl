{{/* Names, labels and checks every template shares. */}}

{{- define "gatehouse.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The most replicas that may serve together: the gateway refuses to start with more than one
     unless PostgreSQL and Redis are configured, and the chart always configures both. */}}
{{- define "gatehouse.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}
{{- max .Values.replicaCount .Values.autoscaling.maxReplicas .Values.autoscaling.minReplicas }}
{{- else }}
{{- .Values.replicaCount }}
{{- end }}
{{- end }}

{{- define "gatehouse.controlService" -}}
{{- printf "%s-control" (include "gatehouse.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.scheme.data" -}}
{{- if .Values.tls.data.secretName }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{- define "gatehouse.scheme.control" -}}
{{- if .Values.tls.control.secretName }}https{{ else }}http{{ end }}
{{- end }}

{{/* Refuse to render what could not run: the stores and the master key are required. */}}
{{- define "gatehouse.checks" -}}
{{- if not .Values.secrets.masterKey.name }}
{{- fail "secrets.masterKey.name is required: a Secret holding the master key (gatehouse master-key generate)" }}
{{- end }}
{{- if not .Values.secrets.databaseUrl.name }}
{{- fail "secrets.databaseUrl.name is required: a Secret holding the postgres:// URL (replicas share PostgreSQL)" }}
{{- end }}
{{- if not .Values.secrets.redisUrl.name }}
{{- fail "secrets.redisUrl.name is required: a Secret holding the redis:// or rediss:// URL (replicas share limits through Redis)" }}
{{- end }}
{{- range $t := list "[server]" "[redis]" "[tls]" "[tls.data]" "[tls.control]" }}
{{- if contains $t $.Values.config }}
{{- fail (printf "config must not contain %s: the chart writes it from values (server, redis, tls)" $t) }}
{{- end }}
{{- end }}
{{- if and .Values.tls.control.clientCaSecretName (not .Values.tls.control.secretName) }}
{{- fail "tls.control.clientCaSecretName needs tls.control.secretName: client certificates need TLS" }}
{{- end }}
{{- end }}
