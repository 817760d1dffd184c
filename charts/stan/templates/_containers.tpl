{{/* What differs between the two containers: arguments, ports, probes and the operator's certificates. */}}

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
args:
  - api
  - --host=0.0.0.0
  - --port={{ .Values.api.port }}
ports:
  - name: http
    containerPort: {{ .Values.api.port }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 20
  timeoutSeconds: 5
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
{{- end }}
