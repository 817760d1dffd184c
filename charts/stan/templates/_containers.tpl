{{/* What differs between the two components: arguments, ports, probes, certificates, and who may reach which port. */}}

{{- define "stan.operatorContainer" -}}
args:
  - operator
  - --leader-election
  - --liveness=http://0.0.0.0:8081/healthz
  {{- if .Values.webhook.enabled }}
  - --no-webhook-manage
  - --webhook-listen=0.0.0.0
  - --webhook-port={{ .Values.webhook.port }}
  - --webhook-host={{ include "stan.webhookName" . }}.{{ .Release.Namespace }}.svc
  - --webhook-cert-dir=/certs
  {{- else }}
  - --no-webhook
  {{- end }}
  {{- range .Values.operator.watchNamespaces }}
  - --namespace={{ . }}
  {{- end }}
ports:
  - name: liveness
    containerPort: 8081
  - name: metrics
    containerPort: {{ .Values.metrics.port }}
  {{- if .Values.webhook.enabled }}
  - name: webhook
    containerPort: {{ .Values.webhook.port }}
  {{- end }}
livenessProbe:
  httpGet:
    path: /healthz
    port: liveness
  initialDelaySeconds: 10
  periodSeconds: 20
  timeoutSeconds: 5
{{- end }}

{{/* The port the operator serves /metrics on: the one its Service and NetworkPolicy name. */}}
{{- define "stan.operatorEnv" -}}
- name: STAN_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
{{- end }}

{{/* The webhook's port, from anywhere: its caller is the API server (see networkpolicy.yaml).
The metrics port, from networkPolicy.metricsFrom (when empty, from anywhere). */}}
{{- define "stan.operatorIngress" -}}
{{- if .Values.webhook.enabled }}
- ports:
    - port: {{ .Values.webhook.port }}
      protocol: TCP
{{- end }}
- ports:
    - port: {{ .Values.metrics.port }}
      protocol: TCP
  {{- with .Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "stan.operatorMounts" -}}
{{- if .Values.webhook.enabled }}
- name: certs
  mountPath: /certs
  readOnly: true
{{- end }}
{{- end }}

{{- define "stan.operatorVolumes" -}}
{{- if .Values.webhook.enabled }}
- name: certs
  secret:
    secretName: {{ include "stan.webhookSecretName" . }}
{{- end }}
{{- end }}

{{- define "stan.apiContainer" -}}
{{- $scheme := include "stan.apiScheme" . -}}
args:
  - api
  - --host=0.0.0.0
  - --port={{ .Values.api.port }}
  {{- if .Values.api.tls.secretName }}
  - --tls-cert-file=/tls/tls.crt
  - --tls-key-file=/tls/tls.key
  {{- end }}
ports:
  - name: {{ $scheme }}
    containerPort: {{ .Values.api.port }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ $scheme }}
    scheme: {{ upper $scheme }}
  periodSeconds: 20
  timeoutSeconds: 5
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $scheme }}
    scheme: {{ upper $scheme }}
  periodSeconds: 10
  timeoutSeconds: 5
{{- end }}

{{/* The facade's port, from networkPolicy.apiFrom (when empty, from anywhere) and the chart's test Pod. */}}
{{- define "stan.apiIngress" -}}
- ports:
    - port: {{ .Values.api.port }}
      protocol: TCP
  {{- with .Values.networkPolicy.apiFrom }}
  from:
    {{- toYaml . | nindent 4 }}
    - podSelector:
        matchLabels:
          {{- include "stan.componentSelectorLabels" (list $ "test") | nindent 10 }}
  {{- end }}
{{- end }}

{{- define "stan.apiMounts" -}}
{{- if .Values.api.tls.secretName }}
- name: tls
  mountPath: /tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "stan.apiVolumes" -}}
{{- with .Values.api.tls.secretName }}
- name: tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}
