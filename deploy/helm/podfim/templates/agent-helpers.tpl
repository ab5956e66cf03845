{{/*
Helpers of the node agent's templates (agent-*.yaml, mode agent). Only
defines: this file renders to nothing.
*/}}

{{- define "podfim.agent.name" -}}
{{- printf "%s-agent" (include "podfim.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The responses the agent may run: agent.respond and agent.escalate, as a JSON list. */}}
{{- define "podfim.agent.responses" -}}
{{- concat .Values.agent.respond (.Values.agent.escalate | default list) | uniq | toJson -}}
{{- end -}}

{{/*
The cross-field check the schema cannot make: the webhook action needs its
URL (the agent refuses to start without it). A URL without the action is
the default of pods whose podfim.io/respond has webhook.
*/}}
{{- define "podfim.agent.validate" -}}
{{- $responses := include "podfim.agent.responses" . | fromJsonArray -}}
{{- if and (has "webhook" $responses) (not .Values.agent.webhookURL) -}}
{{- fail "agent.respond or agent.escalate has webhook: it needs agent.webhookURL" -}}
{{- end -}}
{{- end -}}

{{/*
One flag whose value is optional (pass a dict: flag, value): nothing when
the value is null or empty, so that the agent's own default applies.
Numbers from values.yaml are floats: printed as integers.
*/}}
{{- define "podfim.agent.optionalArg" -}}
{{- $v := .value -}}
{{- if not (or (kindIs "invalid" $v) (eq (toString $v) "")) -}}
{{- if kindIs "float64" $v -}}
- --{{ .flag }}={{ int64 $v }}
{{- else -}}
- --{{ .flag }}={{ $v }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The arguments of `podfim agent`. */}}
{{- define "podfim.agent.args" -}}
{{- $a := .Values.agent -}}
- agent
- --state-dir={{ $a.stateDir }}
- --listen={{ include "podfim.listen" (dict "ctx" . "port" $a.port) }}
- --respond={{ join "," $a.respond }}
- --escalate={{ join "," ($a.escalate | default list) }}
- --quick-interval={{ $a.quickInterval }}
- --full-interval={{ $a.fullInterval }}
- --exec-drift={{ $a.execDrift }}
- --log-level={{ $a.logLevel }}
{{- range $o := list (list "kill-limit" $a.killLimit) (list "kill-window" $a.killWindow) (list "delete-min-age" $a.deleteMinAge) (list "restore-max-bytes" $a.restoreMaxBytes) (list "evidence-max-bytes" $a.evidenceMaxBytes) }}
{{- with include "podfim.agent.optionalArg" (dict "flag" (index $o 0) "value" (index $o 1)) }}
{{ . }}
{{- end }}
{{- end }}
{{- with $a.webhookURL }}
- {{ printf "--webhook-url=%s" . | quote }}
{{- end }}
{{- range $a.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}
