package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/podfim/podfim/internal/inject"
)

// errNotProtected: the pod does not opt in (or no longer runs).
var errNotProtected = errors.New("not protected")

// want is what a pod that opts in asks for: its settings (the webhook's
// parse of its annotations), the containers to protect, and the digest of
// both, which tells when its instances must be started again.
type want struct {
	settings   inject.Settings
	containers []string
	digest     string
	// invalid, when set, is why the pod cannot be protected as it asks
	// (an invalid annotation, a source the agent does not read): nothing
	// runs, and its readiness gate condition says so, False.
	invalid error
}

// optedIn reports whether pod asks for the agent: podfim.io/protect on the
// pod ("enabled"; "disabled" opts it out of an enabled namespace) or on its
// namespace.
func (a *Agent) optedIn(pod *corev1.Pod) bool {
	switch pod.Labels[inject.LabelProtect] {
	case inject.InjectOn:
		return true
	case inject.InjectOff:
		return false
	}
	obj, ok, err := a.namespaces.GetStore().GetByKey(pod.Namespace)
	if err != nil || !ok {
		return false
	}
	ns, ok := obj.(*corev1.Namespace)
	return ok && ns.Labels[inject.LabelProtect] == inject.InjectOn
}

// wanted returns what pod asks for, or errNotProtected. A pod that has
// ended (Succeeded, Failed) has nothing left to protect; its state stays
// until it is deleted.
func (a *Agent) wanted(pod *corev1.Pod) (*want, error) {
	if self := a.cfg.Self; self.Name == pod.Name && self.Namespace == pod.Namespace {
		return nil, errNotProtected // its own pod: it cannot see its own mount namespace's files as a target
	}
	if !a.optedIn(pod) || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil, errNotProtected
	}
	w := &want{}
	s, err := inject.ParseAnnotations(pod.Annotations, a.cfg.Defaults.Respond)
	if err != nil {
		w.invalid = err
	} else {
		w.settings = s
		w.containers, w.invalid = containersOf(pod, s)
	}
	// The digest covers what configures the instances: a change of an
	// annotation restarts them, a status update does not.
	data, _ := json.Marshal(struct {
		Ann        map[string]string
		Containers []string
		Invalid    string
	}{pod.Annotations, w.containers, fmt.Sprint(w.invalid)})
	w.digest = fmt.Sprintf("%x", sha256.Sum256(data))
	return w, nil
}

// containersOf lists the containers of pod to protect: podfim.io/target,
// or every container of the spec but a podfim sidecar.
func containersOf(pod *corev1.Pod, s inject.Settings) ([]string, error) {
	var names []string
	for _, c := range pod.Spec.Containers {
		if c.Name != inject.ContainerName {
			names = append(names, c.Name)
		}
	}
	if s.Target != "" {
		if !slices.Contains(names, s.Target) {
			return nil, fmt.Errorf("annotation %q: the pod has no container %q", inject.AnnTarget, s.Target)
		}
		return []string{s.Target}, nil
	}
	return names, nil
}

// reconcileDirty reconciles every pod marked since the last call.
func (a *Agent) reconcileDirty(ctx context.Context) {
	a.mu.Lock()
	keys := make([]string, 0, len(a.dirty))
	for k := range a.dirty {
		keys = append(keys, k)
	}
	clear(a.dirty)
	a.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		a.reconcile(ctx, k)
	}
	a.metrics.SetProtected(a.protectedContainers())
}

// reconcile brings the protection of the pod at key (namespace/name) in
// line with the informer's view: started, restarted with new settings,
// stopped, and its state removed once the pod is gone.
func (a *Agent) reconcile(ctx context.Context, key string) {
	obj, exists, err := a.pods.GetStore().GetByKey(key)
	var pod *corev1.Pod
	if err == nil && exists {
		pod, _ = obj.(*corev1.Pod)
	}
	a.mu.Lock()
	var cur *protected
	for _, p := range a.byUID {
		if p.key == key {
			cur = p
		}
	}
	a.mu.Unlock()
	if cur != nil && (pod == nil || string(pod.UID) != cur.uid) {
		// Deleted, or replaced by a pod of the same name: its state goes
		// with it.
		a.stop(cur)
		a.forget(cur.uid)
		cur = nil
	}
	if pod == nil {
		return
	}
	w, err := a.wanted(pod)
	switch {
	case err != nil:
		if cur != nil {
			a.log.Info("pod no longer protected", keyNamespace, pod.Namespace, keyPod, pod.Name)
			a.stop(cur)
		}
		return
	case cur != nil && cur.digest == w.digest:
		cur.gate.podChanged(pod)
		return
	case cur != nil:
		a.log.Info("pod settings changed: protection restarts", keyNamespace, pod.Namespace, keyPod, pod.Name)
		a.stop(cur)
	}
	a.start(ctx, pod, w)
}

// forget removes the state of the pod with uid, once it is gone.
func (a *Agent) forget(uid string) {
	if err := a.state.remove(uid); err != nil {
		a.log.Error("cannot remove the state of a deleted pod", keyUID, uid, keyError, err.Error())
		return
	}
	a.log.Info("state of a deleted pod removed", keyUID, uid)
}

// collect removes the state of every pod that is not on the node any more
// (deleted while the agent was down), once the informer has listed them.
func (a *Agent) collect() {
	uids, err := a.state.uids()
	if err != nil {
		a.log.Error("cannot list the state directory", keyError, err.Error())
		return
	}
	live := map[string]bool{}
	for _, obj := range a.pods.GetStore().List() {
		if pod, ok := obj.(*corev1.Pod); ok {
			live[string(pod.UID)] = true
		}
	}
	for _, uid := range uids {
		if !live[uid] {
			a.forget(uid)
		}
	}
}

// podByKey returns the informer's pod at key with uid (nil when it is gone
// or was replaced).
func (a *Agent) podByKey(key, uid string) *corev1.Pod {
	obj, ok, err := a.pods.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok || string(pod.UID) != uid {
		return nil
	}
	return pod
}
