{{/*
Helpers of the admission webhook's templates (webhook-*.yaml). Only defines:
this file renders to nothing.
*/}}

{{- define "podfim.webhook.name" -}}
{{- printf "%s-webhook" (include "podfim.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration is named like the release: it is cluster-scoped. */}}
{{- define "podfim.webhook.configName" -}}
{{- include "podfim.fullname" . -}}
{{- end -}}

{{- define "podfim.webhook.tlsSecret" -}}
{{- printf "%s-tls" (include "podfim.webhook.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "podfim.webhook.certManager" -}}
{{- if eq .Values.webhook.tls.mode "cert-manager" }}true{{ end -}}
{{- end -}}

{{/*
The namespaces the webhook never intercepts: kube-system, its own (so it can
always be restarted, even with failurePolicy Fail) and the listed ones.
*/}}
{{- define "podfim.webhook.excluded" -}}
{{- $ns := concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq -}}
{{- toJson $ns -}}
{{- end -}}

{{/* How the API server reaches the webhook. */}}
{{- define "podfim.webhook.clientConfig" -}}
clientConfig:
  {{- if .Values.hostNetwork.enabled }}
  # No pod network: the API server calls the hostNetwork replica on the node.
  url: https://{{ .Values.hostNetwork.bindAddress }}:{{ .Values.webhook.port }}/mutate
  {{- else }}
  service:
    name: {{ include "podfim.webhook.name" . }}
    namespace: {{ .Release.Namespace }}
    path: /mutate
    port: 443
  {{- end }}
  # Self-signed mode: the webhook fills in its CA. cert-manager mode: the
  # cainjector does (the annotation above).
{{- end }}

{{/* Everything the two webhooks share; each setting is deliberate (docs/webhook.md). */}}
{{- define "podfim.webhook.common" -}}
rules:
- apiGroups: [""]
  apiVersions: [v1]
  operations: [CREATE]
  resources: [pods]
  scope: Namespaced
# Equivalent: a pod sent through another API version is still seen.
matchPolicy: Equivalent
# None: the webhook only answers; it changes nothing elsewhere, so dry-run
# requests are safe to send it.
sideEffects: None
admissionReviewVersions: [v1]
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
# Fail (default): a pod that asked for file integrity monitoring must not
# start without it because the webhook was down. Only opted-in pods are
# affected, and the webhook's own namespace and kube-system never are, so
# the webhook itself can always come back.
failurePolicy: {{ .Values.webhook.failurePolicy }}
# IfNeeded: if a later webhook adds containers, the pod comes back once; the
# sidecar is already there, so nothing changes.
reinvocationPolicy: {{ .Values.webhook.reinvocationPolicy }}
{{- end }}
