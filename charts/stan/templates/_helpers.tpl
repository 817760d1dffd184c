{{/*
Names: Kubernetes limits most names to 63 characters (DNS labels), so every
name is truncated there, with a trailing "-" trimmed.
*/}}
{{- define "stan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stan.fullname" -}}
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

{{/* A component's name: "<fullname>-<suffix>", still at most 63 characters. Call with (list $ "suffix"). */}}
{{- define "stan.componentName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "stan.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "stan.operatorName" -}}{{ include "stan.componentName" (list . "operator") }}{{- end }}
{{- define "stan.apiName" -}}{{ include "stan.componentName" (list . "api") }}{{- end }}
{{- define "stan.webhookName" -}}{{ include "stan.componentName" (list . "webhook") }}{{- end }}
{{- define "stan.webhookSecretName" -}}{{ include "stan.componentName" (list . "webhook-tls") }}{{- end }}
{{- define "stan.metricsName" -}}{{ include "stan.componentName" (list . "metrics") }}{{- end }}

{{/* How the REST API is served: "https" with api.tls.secretName, else "http". */}}
{{- define "stan.apiScheme" -}}{{ if .Values.api.tls.secretName }}https{{ else }}http{{ end }}{{- end }}

{{- define "stan.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "stan.labels" -}}
helm.sh/chart: {{ include "stan.chart" . }}
{{ include "stan.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stan
{{- end }}

{{- define "stan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's objects, and its selector. Call with (list $ "operator"). */}}
{{- define "stan.componentLabels" -}}
{{ include "stan.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "stan.componentSelectorLabels" -}}
{{ include "stan.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "stan.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The pod spec both Deployments share: service account, security, scheduling,
the configuration and a writable /tmp. Call with (dict "root" $ "component"
"operator" "values" .Values.operator "container" <YAML> "env" <YAML>
"mounts" <YAML> "volumes" <YAML>); "env" comes before extraEnv, which may override it.
*/}}
{{- define "stan.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "stan.componentName" (list $root .component) }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ include "stan.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    env:
      - name: STAN_CONFIG
        value: /etc/stan/config.yaml
      - name: STAN_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      {{- with .env }}
      {{- . | trim | nindent 6 }}
      {{- end }}
      {{- with $root.Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml .values.resources | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/stan
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- with .mounts }}
      {{- . | trim | nindent 6 }}
      {{- end }}
    {{- .container | trim | nindent 4 }}
volumes:
  - name: config
    configMap:
      name: {{ include "stan.fullname" $root }}
  - name: tmp
    emptyDir: {}
  {{- with .volumes }}
  {{- . | trim | nindent 2 }}
  {{- end }}
{{- end }}

{{/* A Deployment's metadata and pod template around stan.podSpec; takes the same dict. */}}
{{- define "stan.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "stan.componentName" (list $root .component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stan.componentLabels" (list $root .component) | nindent 4 }}
spec:
  replicas: {{ .values.replicaCount }}
  selector:
    matchLabels:
      {{- include "stan.componentSelectorLabels" (list $root .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "stan.componentLabels" (list $root .component) | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with .values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "stan.podSpec" . | nindent 6 }}
{{- end }}

{{/* A ServiceAccount for one component. Call with (list $ "operator" .Values.operator). */}}
{{- define "stan.serviceAccount" -}}
{{- $root := index . 0 -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "stan.componentName" (list $root (index . 1)) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stan.componentLabels" (list $root (index . 1)) | nindent 4 }}
  {{- with (index . 2).serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
One role and its binding to a component's ServiceAccount. Call with (dict "root" $
"component" "operator" "concern" "leases" "cluster" true "rules" <YAML>);
cluster-wide roles are ClusterRoles, the others Roles in the release namespace.
*/}}
{{- define "stan.role" -}}
{{- $root := .root }}
{{- $kind := ternary "ClusterRole" "Role" .cluster }}
{{- $name := include "stan.componentName" (list $root (printf "%s-%s" .component .concern)) -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $kind }}
metadata:
  name: {{ $name }}
  {{- if not .cluster }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "stan.componentLabels" (list $root .component) | nindent 4 }}
rules:
  {{- .rules | trim | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $kind }}Binding
metadata:
  name: {{ $name }}
  {{- if not .cluster }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "stan.componentLabels" (list $root .component) | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $kind }}
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "stan.componentName" (list $root .component) }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}

{{/*
A NetworkPolicy admitting to one component's Pods the ingress rules given and nothing else.
Call with (dict "root" $ "component" "api" "ingress" <YAML list, empty for none>).
*/}}
{{- define "stan.networkPolicy" -}}
{{- $root := .root -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "stan.componentName" (list $root .component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stan.componentLabels" (list $root .component) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "stan.componentSelectorLabels" (list $root .component) | nindent 6 }}
  policyTypes: [Ingress]
  {{- with .ingress | trim }}
  ingress:
    {{- . | nindent 4 }}
  {{- else }}
  ingress: []
  {{- end }}
{{- end }}
