{{/* Names, labels and the pieces every pod shares. */}}

{{- define "task-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "task-service.fullname" -}}
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

{{- define "task-service.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "task-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "task-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "task-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "task-service.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "task-service.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-env" (include "task-service.fullname" .)) }}
{{- end }}

{{- define "task-service.configName" -}}
{{- printf "%s-env" (include "task-service.fullname" .) }}
{{- end }}

{{/* DATABASE_URL: the external one, or one for the optional PostgreSQL subchart. */}}
{{- define "task-service.databaseUrl" -}}
{{- if .Values.postgresql.enabled }}
{{- $auth := .Values.postgresql.auth }}
{{- $password := required "postgresql.auth.password is required with postgresql.enabled" $auth.password }}
{{- printf "postgresql://%s:%s@%s-postgresql:5432/%s" $auth.username ($password | urlquery | replace "+" "%20") .Release.Name $auth.database }}
{{- else }}
{{- required "secret.DATABASE_URL is required (or existingSecret, or postgresql.enabled)" .Values.secret.DATABASE_URL }}
{{- end }}
{{- end }}

{{/* Environment for every container: ConfigMap, Secret, and the pod IP for ALLOWED_HOSTS. */}}
{{- define "task-service.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "task-service.configName" . }}
  - secretRef:
      name: {{ include "task-service.secretName" . }}
env:
  - name: POD_IP
    valueFrom:
      fieldRef:
        fieldPath: status.podIP
{{- end }}

{{/* The checksum makes pods restart when the environment changes. */}}
{{- define "task-service.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* Common pod settings: non-root, no service account token, writable /tmp only. */}}
{{- define "task-service.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  - name: tmp
    emptyDir: {}
{{- if .Values.migrations.waitForMigrations }}
initContainers:
  - name: wait-for-migrations
    image: {{ include "task-service.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: ["sh", "-c", "until python manage.py migrate --check >/dev/null; do echo 'waiting for migrations'; sleep 3; done"]
    {{- include "task-service.env" . | nindent 4 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
    resources:
      {{- toYaml .Values.migrations.resources | nindent 6 }}
{{- end }}
{{- end }}
