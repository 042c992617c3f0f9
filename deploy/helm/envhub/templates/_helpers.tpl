{{/* Names ------------------------------------------------------------------- */}}

{{- define "envhub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "envhub.fullname" -}}
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

{{/* "<fullname>-<suffix>", within 63 characters. */}}
{{- define "envhub.component" -}}
{{- printf "%s-%s" (include "envhub.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "envhub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "envhub.webAccount" -}}
{{- include "envhub.component" (dict "root" . "suffix" "web") }}
{{- end }}

{{- define "envhub.workerAccount" -}}
{{- include "envhub.component" (dict "root" . "suffix" "worker") }}
{{- end }}

{{/* Labels. Never app.kubernetes.io/managed-by=envhub: envhub finds (and garbage-
collects) its environments' objects by that label; its own are Helm's. */}}

{{- define "envhub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "envhub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "envhub.labels" -}}
helm.sh/chart: {{ include "envhub.chart" . }}
{{ include "envhub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: envhub
{{- end }}

{{/* Image ------------------------------------------------------------------- */}}

{{- define "envhub.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Settings ---------------------------------------------------------------- */}}

{{/* Non-secret ENVHUB_* settings as a map: the ConfigMap's data, and the
migrations Job's env (it runs before the ConfigMap exists). */}}
{{- define "envhub.settings" -}}
{{- $settings := dict
  "ENVHUB_MODE" "production"
  "ENVHUB_RUNTIME" .Values.envhub.runtime
  "ENVHUB_BASE_URL" .Values.envhub.baseUrl
  "ENVHUB_QUEUE_NAME" .Values.envhub.queueName
  "ENVHUB_DATA_DIR" "/var/lib/envhub"
  "ENVHUB_KUBE_INGRESS_NAMESPACES" (join "," (include "envhub.urlProviderNamespaces" . | fromJsonArray))
  "ENVHUB_KUBE_OWN_NAMESPACE" .Release.Namespace
  "ENVHUB_URL_PROVIDER" .Values.envhub.urls.provider
  "ENVHUB_GATEWAY_INTERNAL_URL" (printf "http://%s.%s.svc:%v" (include "envhub.component" (dict "root" . "suffix" "web")) .Release.Namespace .Values.web.service.port)
  "ENVHUB_KUBE_WEB_POD_LABELS" (printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=web" (include "envhub.name" .) .Release.Name)
  "ENVHUB_KUBE_WEB_POD_PORT" (toString .Values.web.port)
  "ENVHUB_LOG_FORMAT" .Values.envhub.logFormat
}}
{{- if not (has .Values.envhub.logFormat (list "text" "json")) }}
{{- fail "envhub.logFormat: text or json" }}
{{- end }}
{{- with (int .Values.metrics.workerPort) }}
{{- /* The workers serve their metrics on the pod's address (the web ignores these). */}}
{{- $_ := set $settings "ENVHUB_WORKER_METRICS_PORT" (toString .) }}
{{- $_ := set $settings "ENVHUB_WORKER_METRICS_HOST" "0.0.0.0" }}
{{- end }}
{{- with .Values.envhub.objectStore }}
{{- if .bucket }}
{{- $_ := set $settings "ENVHUB_OBJECT_STORE_BUCKET" .bucket }}
{{- $_ := set $settings "ENVHUB_OBJECT_STORE_REGION" (required "envhub.objectStore.region is required with a bucket" .region) }}
{{- with .url }}
{{- $_ := set $settings "ENVHUB_OBJECT_STORE_URL" . }}
{{- end }}
{{- else if .url }}
{{- fail "envhub.objectStore.url is set without a bucket: name the bucket (envhub.objectStore.bucket)" }}
{{- end }}
{{- end }}
{{- if not (has .Values.envhub.urls.provider (list "local" "ingress" "cloudflare")) }}
{{- fail "envhub.urls.provider: local, ingress or cloudflare" }}
{{- end }}
{{- with .Values.envhub.urls.localUrlDomain }}
{{- $_ := set $settings "ENVHUB_LOCAL_URL_DOMAIN" . }}
{{- end }}
{{- if eq .Values.envhub.urls.provider "ingress" }}
{{- $ingress := .Values.envhub.urls.ingress }}
{{- if not $ingress.domain }}
{{- fail "envhub.urls.ingress.domain: required with envhub.urls.provider=ingress (its wildcard *.<domain> points at your ingress controller)" }}
{{- end }}
{{- $_ := set $settings "ENVHUB_INGRESS_DOMAIN" $ingress.domain }}
{{- with $ingress.className }}
{{- $_ := set $settings "ENVHUB_INGRESS_CLASS" . }}
{{- end }}
{{- with $ingress.clusterIssuer }}
{{- $_ := set $settings "ENVHUB_INGRESS_CLUSTER_ISSUER" . }}
{{- end }}
{{- with $ingress.tlsSecret }}
{{- $_ := set $settings "ENVHUB_INGRESS_TLS_SECRET" . }}
{{- end }}
{{- end }}
{{- if eq .Values.envhub.urls.provider "cloudflare" }}
{{- $cf := .Values.envhub.urls.cloudflare }}
{{- if not (regexMatch "^[0-9a-fA-F]{32}$" ($cf.accountId | toString)) }}
{{- fail "envhub.urls.cloudflare.accountId: required with envhub.urls.provider=cloudflare (32 hexadecimal characters)" }}
{{- end }}
{{- if not $cf.zone }}
{{- fail "envhub.urls.cloudflare.zone: required with envhub.urls.provider=cloudflare (the zone's name, e.g. example.com)" }}
{{- end }}
{{- if not .Values.secrets.cloudflareApiToken.name }}
{{- fail "secrets.cloudflareApiToken.name is required with envhub.urls.provider=cloudflare: the Secret holding ENVHUB_CLOUDFLARE_API_TOKEN (see values.yaml)" }}
{{- end }}
{{- if and $cf.connector.enabled (not .Values.secrets.cloudflareTunnelToken.name) }}
{{- fail "secrets.cloudflareTunnelToken.name is required with the cloudflared connector: the Secret holding the tunnel's token (see values.yaml)" }}
{{- end }}
{{- if and $cf.tunnelId (not (regexMatch "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" $cf.tunnelId)) }}
{{- fail "envhub.urls.cloudflare.tunnelId: a tunnel id (a UUID), or empty" }}
{{- end }}
{{- $_ := set $settings "ENVHUB_CLOUDFLARE_ACCOUNT_ID" ($cf.accountId | toString | lower) }}
{{- $_ := set $settings "ENVHUB_CLOUDFLARE_ZONE" $cf.zone }}
{{- with $cf.tunnelId }}
{{- $_ := set $settings "ENVHUB_CLOUDFLARE_TUNNEL_ID" . }}
{{- end }}
{{- with $cf.tunnelName }}
{{- $_ := set $settings "ENVHUB_CLOUDFLARE_TUNNEL_NAME" . }}
{{- end }}
{{- end }}
{{- with .Values.envhub.oidc.issuer }}
{{- $_ := set $settings "ENVHUB_OIDC_ISSUER" . }}
{{- end }}
{{- with .Values.envhub.oidc.clientId }}
{{- $_ := set $settings "ENVHUB_OIDC_CLIENT_ID" . }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- /* Behind the ingress controller: the client is the address it forwards, for
     rate limits and the audit trail (envhub.settings may say otherwise). */}}
{{- $_ := set $settings "ENVHUB_TRUSTED_PROXY_HOPS" "1" }}
{{- end }}
{{- with .Values.envhub.oidc.allowedDomains }}
{{- $_ := set $settings "ENVHUB_OIDC_ALLOWED_DOMAINS" (join "," .) }}
{{- end }}
{{- with .Values.envhub.oidc.allowedGroups }}
{{- $_ := set $settings "ENVHUB_OIDC_ALLOWED_GROUPS" (join "," .) }}
{{- end }}
{{- if and .Values.envhub.oidc.issuer (not (or .Values.envhub.oidc.allowedDomains .Values.envhub.oidc.allowedGroups (hasKey .Values.envhub.settings "ENVHUB_OIDC_ALLOW_ANY_USER"))) }}
{{- fail "envhub.oidc: say who may sign in with allowedDomains or allowedGroups (or envhub.settings.ENVHUB_OIDC_ALLOW_ANY_USER: \"true\")" }}
{{- end }}
{{- range $name, $value := .Values.envhub.settings }}
{{- if not (hasPrefix "ENVHUB_" $name) }}
{{- fail (printf "envhub.settings: %s is not an ENVHUB_* setting" $name) }}
{{- end }}
{{- if has $name (list "ENVHUB_DATABASE_URL" "ENVHUB_REDIS_URL" "ENVHUB_SECRET_KEY" "ENVHUB_ENCRYPTION_KEY" "ENVHUB_OIDC_CLIENT_SECRET" "ENVHUB_CLOUDFLARE_API_TOKEN" "ENVHUB_METRICS_TOKEN" "ENVHUB_OBJECT_STORE_ACCESS_KEY_ID" "ENVHUB_OBJECT_STORE_SECRET_ACCESS_KEY") }}
{{- fail (printf "envhub.settings: %s is a secret; name its Secret under secrets instead" $name) }}
{{- end }}
{{- $_ := set $settings $name (toString $value) }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{/* Where the public-URL provider's proxies run, as a JSON list: the values', plus this
namespace for the cloudflare provider (its cloudflared connector runs here). */}}
{{- define "envhub.urlProviderNamespaces" -}}
{{- $namespaces := .Values.envhub.urlProviderNamespaces }}
{{- if and (eq .Values.envhub.urls.provider "cloudflare") .Values.envhub.urls.cloudflare.connector.enabled }}
{{- $namespaces = append $namespaces .Release.Namespace | uniq }}
{{- end }}
{{- toJson $namespaces }}
{{- end }}

{{/* One secretKeyRef env entry; .required fails the render when the Secret is not named. */}}
{{- define "envhub.secretEnv" -}}
{{- if .ref.name }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name }}
      key: {{ required (printf "secrets.%s.key is required" .field) .ref.key }}
{{- else if .required }}
{{- fail (printf "secrets.%s.name is required: the Secret holding %s (see values.yaml)" .field .env) }}
{{- end }}
{{- end }}

{{/* The secret settings, from the Secrets you created: all of them, or
(with "only") the named ones. Call with (dict "root" $ "only" (list ...)). */}}
{{- define "envhub.secretsEnv" -}}
{{- $root := .root }}
{{- $only := .only | default (list "databaseUrl" "redisUrl" "secretKey" "encryptionKey" "oidcClientSecret" "cloudflareApiToken" "objectStore") }}
{{- $s := $root.Values.secrets }}
{{- if has "databaseUrl" $only }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_DATABASE_URL" "field" "databaseUrl" "ref" $s.databaseUrl "required" true) }}
{{- end }}
{{- if has "redisUrl" $only }}
{{- if $root.Values.redisUrl }}
- name: ENVHUB_REDIS_URL
  value: {{ $root.Values.redisUrl | quote }}
{{- else }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_REDIS_URL" "field" "redisUrl" "ref" $s.redisUrl "required" true) }}
{{- end }}
{{- end }}
{{- if has "secretKey" $only }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_SECRET_KEY" "field" "secretKey" "ref" $s.secretKey "required" true) }}
{{- end }}
{{- if has "encryptionKey" $only }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_ENCRYPTION_KEY" "field" "encryptionKey" "ref" $s.encryptionKey "required" false) }}
{{- end }}
{{- if has "oidcClientSecret" $only }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_OIDC_CLIENT_SECRET" "field" "oidcClientSecret" "ref" $s.oidcClientSecret "required" false) }}
{{- end }}
{{- if has "objectStore" $only }}
{{- if and (not $root.Values.envhub.objectStore.bucket) (or $s.objectStoreAccessKeyId.name $s.objectStoreSecretAccessKey.name) }}
{{- fail "secrets.objectStoreAccessKeyId/objectStoreSecretAccessKey are named without a bucket: set envhub.objectStore.bucket" }}
{{- end }}
{{- if ne (empty $s.objectStoreAccessKeyId.name) (empty $s.objectStoreSecretAccessKey.name) }}
{{- fail "secrets.objectStoreAccessKeyId and secrets.objectStoreSecretAccessKey: name both or neither" }}
{{- end }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_OBJECT_STORE_ACCESS_KEY_ID" "field" "objectStoreAccessKeyId" "ref" $s.objectStoreAccessKeyId "required" false) }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_OBJECT_STORE_SECRET_ACCESS_KEY" "field" "objectStoreSecretAccessKey" "ref" $s.objectStoreSecretAccessKey "required" false) }}
{{- end }}
{{- if and (has "cloudflareApiToken" $only) (eq $root.Values.envhub.urls.provider "cloudflare") }}
{{- include "envhub.secretEnv" (dict "env" "ENVHUB_CLOUDFLARE_API_TOKEN" "field" "cloudflareApiToken" "ref" $s.cloudflareApiToken "required" true) }}
{{- end }}
{{- end }}

{{- define "envhub.checksum" -}}
{{- printf "%s\n%s" (include "envhub.settings" .) (toYaml .Values.secrets) | sha256sum }}
{{- end }}

{{/* Pods -------------------------------------------------------------------- */}}

{{- define "envhub.volumes" -}}
- name: data
{{- if .Values.dataDir.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.dataDir.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.dataDir.sizeLimit }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{- define "envhub.volumeMounts" -}}
- name: data
  mountPath: /var/lib/envhub
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Scheduling fields of one component (web, worker). */}}
{{- define "envhub.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Only on 1.21+ clusters is PodDisruptionBudget served at policy/v1. */}}
{{- define "envhub.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version }}policy/v1{{ else }}policy/v1beta1{{ end }}
{{- end }}

{{/* Whether sign-in is configured (required before the Ingress exposes envhub). */}}
{{- define "envhub.signInConfigured" -}}
{{- if and .Values.envhub.oidc.issuer .Values.envhub.oidc.clientId .Values.secrets.oidcClientSecret.name }}true{{ end }}
{{- end }}
