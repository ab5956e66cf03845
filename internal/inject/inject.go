// Package inject turns a pod that opted in (the label podfim.io/inject=enabled
// on the pod or its namespace, matched by the MutatingWebhookConfiguration)
// into a JSON patch that adds the podfim sidecar, configured by the pod's
// podfim.io/ annotations. It owns the annotation format and the sidecar's
// container spec, and is pure: no HTTP, no TLS, no API. Package webhook
// serves it.
//
// The patch is deterministic (the same pod gives the same bytes) and
// idempotent (a pod that already has the sidecar is let through unchanged),
// so that reinvocation and retries are harmless.
package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/respond"
)

// Names of what the webhook adds to a pod. A pod that already has the
// container is left alone; one that has any of the volumes without it is
// rejected (the names would clash).
const (
	ContainerName   = "podfim"
	VolumeState     = "podfim-state"
	VolumeBaseline  = "podfim-baseline"
	VolumeVerifyKey = "podfim-verify-key"
	VolumeToken     = "podfim-token"
	VolumePull      = "podfim-pull-secret"
	StateDir        = "/var/lib/podfim"
	pullSecretDir   = "/etc/podfim/pull-secret"
	baselineDir     = "/etc/podfim/baseline"
	verifyKeyDir    = "/etc/podfim/verify-key"
	// tokenDir is where client-go's in-cluster configuration looks.
	tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// tokenSeconds is the lifetime of the sidecar's projected token; the
	// kubelet renews it at 80%, client-go rereads the file.
	tokenSeconds = 3600
	// EnvPolicy carries the policy built from podfim.io/paths and
	// podfim.io/exclude to the sidecar (its --policy-yaml flag). An env
	// value is part of the immutable pod spec, unlike an annotation.
	EnvPolicy = "PODFIM_POLICY_YAML"
)

// Capabilities of the sidecar (docs/sidecar.md, "Capabilities").
var (
	capsAlways  = []corev1.Capability{"SYS_PTRACE", "DAC_READ_SEARCH"}
	capsKill    = []corev1.Capability{"KILL"}
	capsRestore = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER"}
)

// tokenVolume is the sidecar's service-account token, CA and namespace, the
// files rest.InClusterConfig reads.
func tokenVolume() corev1.Volume {
	exp := int64(tokenSeconds)
	return corev1.Volume{Name: VolumeToken, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}},
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
			Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
	}}}}
}

// Config is the webhook operator's part of the sidecar: what every injected
// sidecar gets, whatever its pod says.
type Config struct {
	// Image is the podfim image (required).
	Image      string
	PullPolicy corev1.PullPolicy
	// Env is added to every sidecar, e.g. KUBERNETES_SERVICE_HOST in a
	// cluster whose pods cannot reach the API server's Service address.
	Env []corev1.EnvVar
	// Respond is the response of pods that do not annotate one.
	Respond []string
	// Resources of the sidecar; zero: DefaultResources.
	Resources corev1.ResourceRequirements
	// Privileges of pods that do not annotate podfim.io/privileges:
	// PrivilegesDefault (also when empty) or PrivilegesRestricted.
	Privileges string
	// EvidenceMax is --evidence-max-bytes of pods that do not annotate
	// podfim.io/evidence-max-bytes; 0: the sidecar's own default.
	EvidenceMax int64
}

// DefaultResources are modest: an idle sidecar uses well under a millicore
// and a few MiB; a full check of a large image briefly needs more. No CPU
// limit, so a full check is never throttled into a detection gap.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		},
	}
}

// Validate checks the operator's configuration before the webhook starts.
func (c *Config) Validate() error {
	var errs []error
	if c.Image == "" {
		errs = append(errs, errors.New("the sidecar image is required"))
	}
	switch c.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("pull policy %q is not Always, IfNotPresent or Never", c.PullPolicy))
	}
	for _, e := range c.Env {
		if e.Name == "" || strings.ContainsAny(e.Name, "= \x00") {
			errs = append(errs, fmt.Errorf("invalid sidecar environment variable name %q", e.Name))
		}
	}
	if c.Privileges != "" {
		if err := checkPrivileges(c.Privileges); err != nil {
			errs = append(errs, fmt.Errorf("default privileges: %w", err))
		}
	}
	if c.EvidenceMax < 0 || c.EvidenceMax > maxEvidenceBytes {
		errs = append(errs, fmt.Errorf("default evidence bound %d bytes: want 0 (the sidecar's default) to %d", c.EvidenceMax, int64(maxEvidenceBytes)))
	}
	for _, e := range (respond.Plan{Actions: respond.ParseActions(c.Respond...)}).Validate() {
		errs = append(errs, fmt.Errorf("default response: %w", e))
	}
	return errors.Join(errs...)
}

// Outcome says what the webhook did with a pod: the result label of
// podfim_webhook_admissions_total, one vocabulary.
type Outcome = metrics.Admission

// Outcomes of Mutate.
const (
	Injected = metrics.AdmissionInjected
	Skipped  = metrics.AdmissionSkipped
	Rejected = metrics.AdmissionRejected
)

// PatchOp is one RFC 6902 operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Mutate decides what to do with pod: the patch that injects the sidecar
// (Injected), nothing (Skipped, with the reason), or a rejection (Rejected:
// err says why, naming the annotation).
func (c *Config) Mutate(pod *corev1.Pod) ([]PatchOp, Outcome, string, error) {
	if pod.Labels[LabelInject] == InjectOff {
		return nil, Skipped, "the pod opts out (" + LabelInject + "=" + InjectOff + ")", nil
	}
	if hasContainer(pod, ContainerName) {
		// Reinvocation, or a pod spec copied from an injected pod.
		return nil, Skipped, "the pod already has a container named " + ContainerName, nil
	}
	s, err := ParseAnnotations(pod.Annotations, c.Respond)
	if err != nil {
		return nil, Rejected, "", err
	}
	sidecar, volumes, err := c.sidecar(pod, s)
	if err != nil {
		return nil, Rejected, "", err
	}
	var ops []PatchOp
	if pod.Annotations == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{AnnStatus: StatusDone}})
	} else {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + escape(AnnStatus), Value: StatusDone})
	}
	if pod.Spec.ShareProcessNamespace == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/shareProcessNamespace", Value: true})
	}
	ops = append(ops, PatchOp{Op: "add", Path: "/spec/containers/-", Value: sidecar})
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/volumes", Value: volumes})
	} else {
		for _, v := range volumes {
			ops = append(ops, PatchOp{Op: "add", Path: "/spec/volumes/-", Value: v})
		}
	}
	return ops, Injected, "", nil
}

// sidecar builds the container and its volumes, rejecting pods it cannot
// protect: the pod's checks, then the sidecar's arguments, volumes,
// environment, probes and security context, each its own step.
func (c *Config) sidecar(pod *corev1.Pod, s Settings) (corev1.Container, []corev1.Volume, error) {
	spec := &pod.Spec
	port := s.Port
	if port == 0 {
		port = DefaultPort
	}
	target, err := targetName(pod, s.Target)
	if err := errors.Join(slices.Concat(checkSpec(spec), checkVolumes(spec), checkPort(spec, port), []error{err})...); err != nil {
		return corev1.Container{}, nil, err
	}
	plan := s.Plan(c.Respond)
	if s.EvidenceMax == 0 {
		s.EvidenceMax = c.EvidenceMax
	}
	priv, err := c.privileges(pod, s, plan, target)
	if err != nil {
		return corev1.Container{}, nil, err
	}
	// The sidecar's endpoints: on a hostNetwork pod they would listen on
	// the node's addresses, so they listen (and are probed) on loopback.
	listen, probeHost := ":"+strconv.Itoa(port), ""
	if spec.HostNetwork {
		listen, probeHost = "127.0.0.1:"+strconv.Itoa(port), "127.0.0.1"
	}
	args := sidecarArgs(s, plan, listen, target)
	refArgs, volumes, mounts := stateAndRefs(s)
	args = append(args, refArgs...)
	if s.Registry || s.MapSource {
		imgArgs, imgVolumes, imgMounts := imageSource(pod, target, s)
		args, volumes, mounts = append(args, imgArgs...), append(volumes, imgVolumes...), append(mounts, imgMounts...)
	}
	if target != "" || plan.NeedsAPI() || s.Registry || s.MapSource {
		// The API responses and --target-name need the service account's
		// token. The service-account admission plugin ran before this
		// webhook and mounted its token into the app's containers only (if
		// at all: automountServiceAccountToken: false keeps it from the
		// app, the container podfim must not trust); the sidecar gets its
		// own projected token, mounted only here.
		volumes = append(volumes, tokenVolume())
		mounts = append(mounts, corev1.VolumeMount{Name: VolumeToken, MountPath: tokenDir, ReadOnly: true})
	}
	env, err := c.env(s)
	if err != nil {
		return corev1.Container{}, nil, err
	}
	resources := c.Resources
	if resources.Requests == nil && resources.Limits == nil {
		resources = DefaultResources()
	}
	pullPolicy := c.PullPolicy
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	ct := corev1.Container{
		Name:            ContainerName,
		Image:           c.Image,
		ImagePullPolicy: pullPolicy,
		Args:            args,
		Env:             env,
		Ports:           []corev1.ContainerPort{{Name: "podfim-metrics", ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}},
		Resources:       resources,
		VolumeMounts:    mounts,
		// Readiness is the quarantine (the unready action): /readyz fails
		// while a violation is open, so the pod leaves its Services.
		ReadinessProbe: priv.probe("/readyz", port, probeHost, 2, 1),
		// /healthz fails while monitoring the current target fails; a
		// restart of the sidecar is the remedy only after a minute of it.
		LivenessProbe:            priv.probe("/healthz", port, probeHost, 10, 6),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          priv.securityContext,
	}
	if spec.HostNetwork {
		// A hostNetwork pod's container ports are host ports; the sidecar
		// listens on loopback only, so it declares none.
		ct.Ports = nil
	}
	return ct, volumes, nil
}

// checkSpec refuses pods whose spec the sidecar cannot work in.
func checkSpec(spec *corev1.PodSpec) []error {
	var errs []error
	if spec.ShareProcessNamespace != nil && !*spec.ShareProcessNamespace {
		errs = append(errs, errors.New("spec.shareProcessNamespace is false: the podfim sidecar needs it true to see the app's processes and files (remove the field)"))
	}
	if spec.OS != nil && spec.OS.Name != corev1.Linux {
		errs = append(errs, fmt.Errorf("spec.os.name is %q: the podfim sidecar runs on Linux only", spec.OS.Name))
	}
	if spec.HostPID {
		errs = append(errs, errors.New("spec.hostPID is true: the podfim sidecar would see every process of the node; it protects pods without hostPID only"))
	}
	return errs
}

// checkVolumes refuses pods that already have, or mount, a volume of the
// sidecar's names.
func checkVolumes(spec *corev1.PodSpec) []error {
	var errs []error
	ours := []string{VolumeState, VolumeBaseline, VolumeVerifyKey, VolumeToken, VolumePull}
	for _, v := range spec.Volumes {
		if slices.Contains(ours, v.Name) {
			errs = append(errs, fmt.Errorf("the pod already has a volume named %q, which the podfim sidecar uses: rename it", v.Name))
		}
	}
	// A mount of a volume the pod does not have yet is valid once the
	// sidecar's volume of that name is added: it would hand the app the
	// baseline, the bytes restore writes back, or the sidecar's token.
	for _, ct := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, m := range ct.VolumeMounts {
			if slices.Contains(ours, m.Name) {
				errs = append(errs, fmt.Errorf("container %q mounts the volume %q, which only the podfim sidecar may mount: rename it", ct.Name, m.Name))
			}
		}
	}
	return errs
}

// checkPort refuses a sidecar port that a container of the pod uses.
func checkPort(spec *corev1.PodSpec, port int) []error {
	var errs []error
	for _, ct := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, p := range ct.Ports {
			if int(p.ContainerPort) == port || spec.HostNetwork && int(p.HostPort) == port {
				errs = append(errs, &AnnotationError{Key: AnnPort, Problem: fmt.Sprintf("port %d is container %q's port %q: choose another port for the sidecar", port, ct.Name, p.Name)})
			}
		}
	}
	return errs
}

// sidecarArgs are the sidecar's command line, in a fixed order (the patch
// is deterministic); the references' flags follow (stateAndRefs).
func sidecarArgs(s Settings, plan respond.Plan, listen, target string) []string {
	args := []string{"sidecar", "--listen=" + listen, "--state-dir=" + StateDir, "--respond=" + respond.FormatActions(plan.Actions)}
	opt := func(flag, v string) {
		if v != "" {
			args = append(args, "--"+flag+"="+v)
		}
	}
	opt("escalate", respond.FormatActions(plan.Escalate))
	if s.KillLimit != 0 {
		opt("kill-limit", strconv.Itoa(s.KillLimit))
	}
	if s.KillWin != 0 {
		opt("kill-window", s.KillWin.String())
	}
	opt("webhook-url", s.Webhook)
	opt("target-name", target)
	if s.Quick != nil {
		opt("quick-interval", s.Quick.String())
	}
	if s.Full != nil {
		opt("full-interval", s.Full.String())
	}
	opt("log-level", s.LogLevel)
	if s.ExecDrift != nil {
		opt("exec-drift", strconv.FormatBool(*s.ExecDrift))
	}
	opt("subject", s.Subject)
	if s.EvidenceMax != 0 {
		opt("evidence-max-bytes", strconv.FormatInt(s.EvidenceMax, 10))
	}
	return args
}

// stateAndRefs are the sidecar's private state volume and the ConfigMap
// volumes of its baseline and key, with their mounts and flags. All are
// mounted only into the sidecar: the app must not reach the baseline it is
// checked against, nor the bytes restore writes back.
func stateAndRefs(s Settings) (args []string, volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	volumes = []corev1.Volume{{Name: VolumeState, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	mounts = []corev1.VolumeMount{{Name: VolumeState, MountPath: StateDir}}
	addRef := func(r *Ref, flag, vol, dir string) {
		switch {
		case r == nil:
			return
		case r.Source == SourceFile:
			args = append(args, "--"+flag+"="+r.Path)
			return
		}
		args = append(args, "--"+flag+"="+dir+"/"+r.Key)
		volumes = append(volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: r.ConfigMap},
			Items:                []corev1.KeyToPath{{Key: r.Key, Path: r.Key}},
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: vol, MountPath: dir, ReadOnly: true})
	}
	addRef(s.Baseline, "baseline", VolumeBaseline, baselineDir)
	addRef(s.VerifyKey, "verify-key", VolumeVerifyKey, verifyKeyDir)
	return args, volumes, mounts
}

// imageSource wires the image-bound sources, podfim.io/baseline: registry
// or configmap. The sidecar reads the app container's imageID from the pod
// status (it gets the token for that); when the pod names the image by
// digest, --image-digest says it too, for a sidecar without RBAC on its
// pod. For registry, the pod's first image pull secret, if any, is mounted
// into the sidecar only, as its registry credentials; for configmap, the
// whole ConfigMap of baselines (podfim.io/baseline-configmap), read-only,
// into the sidecar only: the app must not reach what it is checked
// against.
func imageSource(pod *corev1.Pod, target string, s Settings) (args []string, volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	src := SourceRegistry
	if s.MapSource {
		src = SourceConfigMap
	}
	args = []string{"--baseline-source=" + src}
	if ref, ok := digestRef(appImage(pod, target)); ok {
		args = append(args, "--image-digest="+ref)
	}
	switch {
	case s.MapSource:
		volumes = append(volumes, corev1.Volume{Name: VolumeBaseline, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.BaselineMap},
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: VolumeBaseline, MountPath: baselineDir, ReadOnly: true})
		args = append(args, "--baseline="+baselineDir)
	case len(pod.Spec.ImagePullSecrets) > 0 && pod.Spec.ImagePullSecrets[0].Name != "":
		volumes = append(volumes, corev1.Volume{Name: VolumePull, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: pod.Spec.ImagePullSecrets[0].Name,
			Items:      []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: VolumePull, MountPath: pullSecretDir, ReadOnly: true})
		args = append(args, "--registry-authfile="+pullSecretDir+"/config.json")
	}
	return args, volumes, mounts
}

// appImage is the image of the sidecar's target: the named container, or
// the only one.
func appImage(pod *corev1.Pod, target string) string {
	for _, c := range slices.Concat(pod.Spec.Containers, pod.Spec.InitContainers) {
		if c.Name == target || target == "" {
			return c.Image
		}
	}
	return ""
}

// digestRef returns REPO@sha256:... of an image named by digest (a tag
// beside the digest is dropped: the digest is what runs).
func digestRef(image string) (string, bool) {
	repo, digest, ok := strings.Cut(image, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		return "", false
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	return repo + "@" + digest, true
}

// env is the sidecar's environment: its own pod from the downward API, the
// annotated policy, and the operator's variables.
func (c *Config) env(s Settings) ([]corev1.EnvVar, error) {
	env := []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("POD_UID", "metadata.uid"),
	}
	pol, err := s.Policy()
	if err != nil { // ParseAnnotations has checked it
		return nil, err
	}
	if pol != nil {
		data, err := json.Marshal(pol)
		if err != nil {
			return nil, fmt.Errorf("failed to encode the policy: %w", err)
		}
		env = append(env, corev1.EnvVar{Name: EnvPolicy, Value: string(data)})
	}
	return append(env, c.Env...), nil
}

func probe(path string, port int, host string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(int32(port)), Host: host,
		}},
		PeriodSeconds:    period,
		TimeoutSeconds:   2,
		FailureThreshold: failures,
	}
}

// securityContext drops everything and adds the capabilities the plan's
// actions need (docs/sidecar.md, "Capabilities").
func securityContext(plan respond.Plan) *corev1.SecurityContext {
	caps := slices.Clone(capsAlways)
	if plan.Uses(respond.ActionKill) {
		caps = append(caps, capsKill...)
	}
	if plan.Uses(respond.ActionRestore) {
		caps = append(caps, capsRestore...)
	}
	slices.Sort(caps)
	root, no, yes := int64(0), false, true
	return &corev1.SecurityContext{
		// uid 0 without ambient capabilities is the only way the added
		// capabilities take effect (build/podfim.Dockerfile); everything
		// else is dropped.
		RunAsUser:                &root,
		RunAsGroup:               &root,
		RunAsNonRoot:             &no,
		Privileged:               &no,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// targetName is the --target-name of the sidecar: empty when the pod has one
// app container (the sidecar picks the only other container without the
// API), else the annotated container or the first one.
func targetName(pod *corev1.Pod, want string) (string, error) {
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	// A native sidecar (an init container that keeps running) can be the
	// target too, but only when named.
	var native []string
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			native = append(native, c.Name)
		}
	}
	all := slices.Concat(names, native)
	if len(names) == 0 {
		return "", errors.New("the pod has no containers")
	}
	switch {
	case len(all) == 1 && (want == "" || want == all[0]):
		return "", nil
	case want == "":
		return names[0], nil
	case slices.Contains(all, want):
		return want, nil
	}
	return "", &AnnotationError{Key: AnnTarget, Problem: fmt.Sprintf("the pod has no container %q (containers: %s)", want, strings.Join(all, ", "))}
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == name {
			return true
		}
	}
	return false
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// escape makes s one JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
