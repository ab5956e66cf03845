package inject

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/podfim/podfim/internal/respond"
)

// privileges are what the privilege mode decides about the sidecar: its
// security context and how the kubelet probes it.
type privileges struct {
	securityContext *corev1.SecurityContext
	// exec: probe with `podfim probe` inside the pod instead of httpGet.
	exec bool
}

// privileges picks the pod's mode (its annotation, else the webhook's
// default) and builds the sidecar's security context for it.
func (c *Config) privileges(pod *corev1.Pod, s Settings, plan respond.Plan, target string) (privileges, error) {
	mode := s.Privileges
	if mode == "" {
		mode = c.Privileges
	}
	if mode != PrivilegesRestricted {
		return privileges{securityContext: securityContext(plan)}, nil
	}
	uid, gid, err := appIDs(pod, target)
	if err != nil {
		return privileges{}, &AnnotationError{Key: AnnPrivileges, Problem: err.Error()}
	}
	return privileges{securityContext: restrictedContext(uid, gid), exec: true}, nil
}

// appIDs are the uid and gid the app container runs as, from its own
// securityContext or the pod's. The image's USER is not known here, so
// both must be set: a restricted sidecar reads /proc/<pid>/root only of a
// process with its own uid and gid (ptrace access without CAP_SYS_PTRACE).
func appIDs(pod *corev1.Pod, target string) (uid, gid int64, err error) {
	var app *corev1.Container
	for i, ct := range slices.Concat(pod.Spec.Containers, pod.Spec.InitContainers) {
		if ct.Name == target || target == "" && i == 0 {
			app = &ct
			break
		}
	}
	if app == nil {
		return 0, 0, fmt.Errorf("the pod has no container %q", target)
	}
	var u, g *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		u, g = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := app.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			u = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			g = sc.RunAsGroup
		}
	}
	switch {
	case u == nil || g == nil:
		return 0, 0, fmt.Errorf("%s needs the user and group of container %q: set runAsUser and runAsGroup in its securityContext or the pod's (the sidecar runs as the same uid and gid to read the app's files without capabilities)", PrivilegesRestricted, app.Name)
	case *u == 0:
		return 0, 0, fmt.Errorf("%s: container %q runs as uid 0; the sidecar would run as root, which Pod Security restricted forbids (use %s, or run the app as a non-root user)", PrivilegesRestricted, app.Name, PrivilegesDefault)
	case *u < 0 || *g < 0:
		return 0, 0, fmt.Errorf("%s: container %q has a negative runAsUser or runAsGroup", PrivilegesRestricted, app.Name)
	}
	return *u, *g, nil
}

// restrictedContext is what Pod Security "restricted" admits: a non-root
// user (the app's), no privilege escalation, every capability dropped,
// the runtime's default seccomp profile.
func restrictedContext(uid, gid int64) *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		RunAsUser:                &uid,
		RunAsGroup:               &gid,
		RunAsNonRoot:             &yes,
		Privileged:               &no,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// probe is the sidecar's readiness or liveness probe: an httpGet, or in
// restricted mode `podfim probe` run inside the sidecar, which asks the
// endpoint on the pod's own loopback. Pods of restricted namespaces have
// no hostNetwork, and a kubelet that cannot reach the pod IP (a network
// policy, a pod network that does not route to the node) must not fail
// them.
func (p privileges) probe(path string, port int, host string, period, failures int32) *corev1.Probe {
	pr := probe(path, port, host, period, failures)
	if p.exec {
		pr.ProbeHandler = corev1.ProbeHandler{Exec: &corev1.ExecAction{
			Command: []string{"/podfim", "probe", "http://127.0.0.1:" + strconv.Itoa(port) + path},
		}}
	}
	return pr
}
