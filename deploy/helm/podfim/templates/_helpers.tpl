{{/*
Names and labels shared by every template of the chart (the demo, and the
webhook and monitoring parts). Keep resource names within 63 characters.
*/}}

{{- define "podfim.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "podfim.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "podfim.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource (pass a dict: ctx, component). */}}
{{- define "podfim.labels" -}}
{{ include "podfim.selectorLabels" . }}
helm.sh/chart: {{ include "podfim.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component (pass a dict: ctx, component). */}}
{{- define "podfim.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podfim.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The demo's name: the seed's pod was podfim-demo; a release gets its own prefix. */}}
{{- define "podfim.demo.name" -}}
{{- printf "%s-demo" (include "podfim.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
An image reference from an image value (pass a dict: image, the value, and
ctx, the root context): [registry/]repository, then @digest when a digest is
set (the digest wins: it names exactly one image), else :tag, by default the
chart's appVersion (the podfim release this chart was packaged with).
*/}}
{{- define "podfim.image" -}}
{{- $i := .image -}}
{{- $repo := $i.repository -}}
{{- if $i.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" $i.registry) $i.repository -}}
{{- end -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $repo $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion $i.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The capabilities of a podfim container (the sidecar, the agent), least
privilege: only what its responses need (pass the list of responses).
SYS_PTRACE: open the app's /proc/<pid>/root (another user's process).
DAC_READ_SEARCH: read files the app's user keeps to itself (the 0600 page).
KILL: the kill response. CHOWN, FOWNER, DAC_OVERRIDE: restore writes the
original bytes, owner and mode back into a file of another user. The
webhook's injected sidecars get the same (internal/inject).
*/}}
{{- define "podfim.capabilities" -}}
{{- $caps := list "SYS_PTRACE" "DAC_READ_SEARCH" -}}
{{- if has "kill" . -}}
{{- $caps = append $caps "KILL" -}}
{{- end -}}
{{- if has "restore" . -}}
{{- $caps = concat $caps (list "CHOWN" "FOWNER" "DAC_OVERRIDE") -}}
{{- end -}}
{{- toJson $caps -}}
{{- end -}}

{{/* The sidecar's capabilities: those of sidecar.respond. */}}
{{- define "podfim.sidecar.capabilities" -}}
{{- include "podfim.capabilities" .Values.sidecar.respond -}}
{{- end -}}

{{/*
An httpGet probe action (pass a dict: ctx, path, port). On the host network it
asks the bind address: the pod IP is then the node's, where nothing listens.
*/}}
{{- define "podfim.httpGet" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
  {{- if .ctx.Values.hostNetwork.enabled }}
  host: {{ .ctx.Values.hostNetwork.bindAddress | quote }}
  {{- end }}
{{- end -}}

{{/* Address a server of the pod listens on (pass a dict: ctx, port). */}}
{{- define "podfim.listen" -}}
{{- if .ctx.Values.hostNetwork.enabled -}}
{{- printf "%s:%d" .ctx.Values.hostNetwork.bindAddress (int .port) -}}
{{- else -}}
{{- printf ":%d" (int .port) -}}
{{- end -}}
{{- end -}}

{{/*
The podfim sidecar container (pass a dict: ctx, the root context, and
policyConfigMap, the name of a ConfigMap whose policy.yaml is the policy, or
"" for the built-in policy). Anything of this chart that runs a sidecar uses it.
*/}}
{{- define "podfim.sidecar.container" -}}
{{- $policy := .policyConfigMap -}}
{{- with .ctx -}}
{{- $s := .Values.sidecar -}}
- name: podfim
  image: {{ include "podfim.image" (dict "image" $s.image "ctx" .) | quote }}
  imagePullPolicy: {{ $s.image.pullPolicy }}
  args:
  - sidecar
  - --respond={{ join "," $s.respond }}
  - --listen={{ include "podfim.listen" (dict "ctx" . "port" $s.port) }}
  - --state-dir=/var/lib/podfim
  - --quick-interval={{ $s.quickInterval }}
  - --full-interval={{ $s.fullInterval }}
  - --kill-limit={{ $s.killLimit }}
  - --kill-window={{ $s.killWindow }}
  - --evidence-max-bytes={{ int64 $s.evidenceMaxBytes }}
  - --log-level={{ $s.logLevel }}
  - --exec-drift={{ $s.execDrift }}
  {{- if $policy }}
  - --policy=/etc/podfim/policy.yaml
  {{- end }}
  {{- with $s.targetExe }}
  - --target-exe={{ . }}
  {{- end }}
  {{- with include "podfim.sidecar.baselineArgs" . }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- range $s.extraArgs }}
  - {{ . | quote }}
  {{- end }}
  env:
  # The sidecar's own pod (downward API), for Events and pod actions.
  - name: POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - name: POD_NAMESPACE
    valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
  - name: POD_UID
    valueFrom: {fieldRef: {fieldPath: metadata.uid}}
  {{- with include "podfim.apiServerEnv" . }}
  {{- . | nindent 2 }}
  {{- end }}
  ports:
  - name: podfim-http
    containerPort: {{ $s.port }}
  livenessProbe:
    {{- include "podfim.httpGet" (dict "ctx" . "path" "/healthz" "port" "podfim-http") | nindent 4 }}
    {{- toYaml $s.livenessProbe | nindent 4 }}
  readinessProbe:
    {{- include "podfim.httpGet" (dict "ctx" . "path" "/readyz" "port" "podfim-http") | nindent 4 }}
    {{- toYaml $s.readinessProbe | nindent 4 }}
  securityContext:
    # uid 0: capabilities added to a non-root container are not effective
    # (Kubernetes sets no ambient capabilities). Everything else is dropped.
    runAsUser: 0
    runAsNonRoot: false
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    privileged: false
    capabilities:
      drop: [ALL]
      add: {{ include "podfim.sidecar.capabilities" . }}
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  volumeMounts:
  # Mounted only into the sidecar: the app cannot reach its baseline.
  - name: podfim-state
    mountPath: /var/lib/podfim
  {{- if $policy }}
  - name: podfim-policy
    mountPath: /etc/podfim
    readOnly: true
  {{- end }}
  {{- with include "podfim.sidecar.baselineMounts" . }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- if include "podfim.sidecar.usesAPI" . }}
  # The sidecar's own token (where client-go's in-cluster config looks),
  # mounted only here: the app needs none (automountServiceAccountToken).
  - name: podfim-token
    mountPath: /var/run/secrets/kubernetes.io/serviceaccount
    readOnly: true
  {{- end }}
{{- end -}}
{{- end -}}

{{/* "true" when a response of the sidecar uses the Kubernetes API (event, quarantine, delete). */}}
{{- define "podfim.sidecar.usesAPI" -}}
{{- $r := .Values.sidecar.respond -}}
{{- if or (has "event" $r) (has "quarantine" $r) (has "delete" $r) (eq .Values.sidecar.baseline.source "registry") -}}true{{- end -}}
{{- end -}}

{{/*
The sidecar's baseline source (sidecar.baseline): its flags, and the
ConfigMaps and Secret it reads, mounted into the sidecar only. registry and
configmap fail closed and need the verify key.
*/}}
{{- define "podfim.sidecar.baselineArgs" -}}
{{- $b := .Values.sidecar.baseline -}}
{{- if ne $b.source "first-sight" -}}
{{- if not $b.verifyKey.configMap -}}
{{- fail (printf "sidecar.baseline.source %s needs sidecar.baseline.verifyKey.configMap: only a signed baseline can vouch for an image" $b.source) -}}
{{- end -}}
- --baseline-source={{ $b.source }}
- --verify-key=/etc/podfim-verify-key/{{ $b.verifyKey.key }}
{{- if eq $b.source "configmap" }}
{{- if not $b.configMap }}
{{- fail "sidecar.baseline.source configmap needs sidecar.baseline.configMap" }}
{{- end }}
- --baseline=/etc/podfim-baselines
{{- end }}
{{- if and (eq $b.source "registry") $b.registrySecret }}
- --registry-authfile=/etc/podfim-pull-secret/config.json
{{- end }}
{{- if and (eq $b.source "registry") $b.registryInsecure }}
- --registry-insecure
{{- end }}
{{- end -}}
{{- end -}}

{{- define "podfim.sidecar.baselineMounts" -}}
{{- $b := .Values.sidecar.baseline -}}
{{- if ne $b.source "first-sight" -}}
- name: podfim-verify-key
  mountPath: /etc/podfim-verify-key
  readOnly: true
{{- if eq $b.source "configmap" }}
- name: podfim-baselines
  mountPath: /etc/podfim-baselines
  readOnly: true
{{- end }}
{{- if and (eq $b.source "registry") $b.registrySecret }}
- name: podfim-pull-secret
  mountPath: /etc/podfim-pull-secret
  readOnly: true
{{- end }}
{{- end -}}
{{- end -}}

{{- define "podfim.sidecar.baselineVolumes" -}}
{{- $b := .Values.sidecar.baseline -}}
{{- if ne $b.source "first-sight" -}}
- name: podfim-verify-key
  configMap:
    name: {{ $b.verifyKey.configMap }}
    items:
    - {key: {{ $b.verifyKey.key | quote }}, path: {{ $b.verifyKey.key | quote }}}
{{- if eq $b.source "configmap" }}
- name: podfim-baselines
  configMap:
    name: {{ $b.configMap }}
{{- end }}
{{- if and (eq $b.source "registry") $b.registrySecret }}
- name: podfim-pull-secret
  secret:
    secretName: {{ $b.registrySecret }}
    items:
    - {key: .dockerconfigjson, path: config.json}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The sidecar's volumes (pass the same dict as to podfim.sidecar.container). */}}
{{- define "podfim.sidecar.volumes" -}}
- name: podfim-state
  emptyDir:
    sizeLimit: {{ .ctx.Values.sidecar.stateSizeLimit }}
{{- with .policyConfigMap }}
- name: podfim-policy
  configMap:
    name: {{ . }}
{{- end }}
{{- with include "podfim.sidecar.baselineVolumes" .ctx }}
{{ . }}
{{- end }}
{{- if include "podfim.sidecar.usesAPI" .ctx }}
# A service-account token, the cluster CA and the namespace: the files of
# client-go's in-cluster config, for the sidecar alone (short-lived, rotated
# by the kubelet). RBAC for it: sidecarRBAC.
- name: podfim-token
  projected:
    sources:
    - serviceAccountToken:
        path: token
        expirationSeconds: 3600
    - configMap:
        name: kube-root-ca.crt
        items:
        - {key: ca.crt, path: ca.crt}
    - downwardAPI:
        items:
        - path: namespace
          fieldRef: {fieldPath: metadata.namespace}
{{- end }}
{{- end -}}

{{/* KUBERNETES_SERVICE_HOST/PORT when the Service IP is not routed (host network, no kube-proxy). */}}
{{- define "podfim.apiServerEnv" -}}
{{- if and .Values.hostNetwork.enabled .Values.hostNetwork.apiServerHost -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.hostNetwork.apiServerHost | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .Values.hostNetwork.apiServerPort | default "443" | toString | quote }}
{{- end -}}
{{- end -}}

{{/* The demo's policy text: demo.policy.text, or the chart's files/hello-policy.yaml. */}}
{{- define "podfim.demo.policy" -}}
{{- .Values.demo.policy.text | default (.Files.Get "files/hello-policy.yaml") -}}
{{- end -}}
