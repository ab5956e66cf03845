package inject

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
)

// podSecurity evaluates the pod against Pod Security "restricted" (the
// latest version) with the library the apiserver's PodSecurity admission
// uses, and returns why it is forbidden (nothing: admitted).
func podSecurity(pod *corev1.Pod) []string {
	eval, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks())
	if err != nil {
		panic(err)
	}
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	var reasons []string
	for _, r := range eval.EvaluatePod(lv, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			reasons = append(reasons, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	return reasons
}

// checkRestricted checks a restricted-mode sidecar: the app's user, no
// capability, exec probes of the loopback endpoints.
func checkRestricted(t *testing.T, before *corev1.Pod, sc corev1.Container) {
	t.Helper()
	sec := sc.SecurityContext
	uid, gid, err := appIDs(before, "")
	if err != nil {
		t.Fatal(err)
	}
	if sec.RunAsUser == nil || *sec.RunAsUser != uid || sec.RunAsGroup == nil || *sec.RunAsGroup != gid ||
		sec.RunAsNonRoot == nil || !*sec.RunAsNonRoot || len(sec.Capabilities.Add) != 0 {
		t.Errorf("restricted sidecar: %+v, want uid %d gid %d, non-root, no capability", sec, uid, gid)
	}
	for _, p := range []*corev1.Probe{sc.ReadinessProbe, sc.LivenessProbe} {
		if p == nil || p.Exec == nil || p.HTTPGet != nil || len(p.Exec.Command) != 3 || p.Exec.Command[1] != "probe" ||
			!strings.HasPrefix(p.Exec.Command[2], "http://127.0.0.1:9090/") {
			t.Errorf("restricted sidecar probe %+v, want exec of podfim probe on loopback", p)
		}
	}
}

func restrictedPod(ann map[string]string, pod *corev1.PodSecurityContext, app *corev1.SecurityContext) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Annotations: ann},
		Spec: corev1.PodSpec{SecurityContext: pod, Containers: []corev1.Container{
			{Name: "sidecar-of-the-app", Image: "y", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr(int64(7)), RunAsGroup: ptr(int64(7))}},
			{Name: "app", Image: "x", SecurityContext: app},
		}},
	}
}

func ptr[T any](v T) *T { return &v }

// TestRestrictedIDs: the sidecar takes the target container's uid and gid,
// the container's over the pod's, and refuses a pod whose user it cannot
// know or that runs as root, naming the annotation.
func TestRestrictedIDs(t *testing.T) {
	ann := map[string]string{AnnPrivileges: PrivilegesRestricted, AnnTarget: "app"}
	for _, tt := range []struct {
		name     string
		pod      *corev1.PodSecurityContext
		app      *corev1.SecurityContext
		uid, gid int64
		want     string
	}{
		{"pod level", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(2000))}, nil, 1000, 2000, ""},
		{"container wins", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(2000))},
			&corev1.SecurityContext{RunAsUser: ptr(int64(1001))}, 1001, 2000, ""},
		{"no user", nil, nil, 0, 0, `needs the user and group of container "app"`},
		{"no group", nil, &corev1.SecurityContext{RunAsUser: ptr(int64(1000))}, 0, 0, "runAsGroup"},
		{"root", &corev1.PodSecurityContext{RunAsUser: ptr(int64(0)), RunAsGroup: ptr(int64(0))}, nil, 0, 0, "runs as uid 0"},
		{"negative", nil, &corev1.SecurityContext{RunAsUser: ptr(int64(-1)), RunAsGroup: ptr(int64(5))}, 0, 0, "negative"},
	} {
		pod := restrictedPod(ann, tt.pod, tt.app)
		ops, outcome, _, err := testConfig().Mutate(pod)
		if tt.want != "" {
			if outcome != Rejected || err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `annotation "podfim.io/privileges"`) {
				t.Errorf("%s: %s %v, want rejected with %q", tt.name, outcome, err, tt.want)
			}
			continue
		}
		if outcome != Injected || err != nil {
			t.Fatalf("%s: %s %v", tt.name, outcome, err)
		}
		sc := applyPatch(t, pod, ops).Spec.Containers[2]
		if *sc.SecurityContext.RunAsUser != tt.uid || *sc.SecurityContext.RunAsGroup != tt.gid {
			t.Errorf("%s: sidecar runs as %d:%d, want %d:%d", tt.name, *sc.SecurityContext.RunAsUser, *sc.SecurityContext.RunAsGroup, tt.uid, tt.gid)
		}
	}
}

// TestPrivilegesDefault: the webhook's default mode applies to pods that
// do not annotate one; the annotation wins; bad values are refused.
func TestPrivilegesDefault(t *testing.T) {
	ids := &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(1000))}
	caps := func(c *Config, ann map[string]string) []corev1.Capability {
		t.Helper()
		pod := restrictedPod(ann, ids, nil)
		pod.Spec.Containers = pod.Spec.Containers[1:]
		ops, outcome, _, err := c.Mutate(pod)
		if outcome != Injected {
			t.Fatalf("%s %v", outcome, err)
		}
		return applyPatch(t, pod, ops).Spec.Containers[1].SecurityContext.Capabilities.Add
	}
	c := testConfig()
	if got := caps(c, nil); !slices.Contains(got, "SYS_PTRACE") {
		t.Errorf("default mode: capabilities %v", got)
	}
	c.Privileges = PrivilegesRestricted
	if got := caps(c, nil); len(got) != 0 {
		t.Errorf("restricted by the webhook's default: capabilities %v", got)
	}
	if got := caps(c, map[string]string{AnnPrivileges: PrivilegesDefault}); !slices.Contains(got, "SYS_PTRACE") {
		t.Errorf("annotated default in a restricted webhook: capabilities %v", got)
	}
	c.Privileges = "root"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `default privileges: "root" is not default or restricted`) {
		t.Errorf("Validate: %v", err)
	}
	if _, err := ParseAnnotations(map[string]string{AnnPrivileges: "privileged"}, nil); err == nil || !strings.Contains(err.Error(), `annotation "podfim.io/privileges": "privileged" is not default or restricted`) {
		t.Errorf("ParseAnnotations: %v", err)
	}
}
