package kube

import (
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConditionIntegrity is the pod condition the node agent sets: a pod whose
// spec lists it in readinessGates is Ready (and in its Services'
// EndpointSlices) only while it is True, that is while its containers are
// verified against their baselines and no violation holds it out of
// service.
const ConditionIntegrity corev1.PodConditionType = "podfim.io/integrity"

// Reasons of the integrity condition.
const (
	GateVerified   = "Verified"   // True: verified, nothing open
	GateUnverified = "Unverified" // False: a container's first full check has not completed, or its baseline was refused
	GateViolation  = "Violation"  // False: an integrity violation holds the pod out of service
)

// GateCondition is the integrity condition's wanted state.
type GateCondition struct {
	Status  corev1.ConditionStatus
	Reason  string
	Message string
}

// Of returns the pod's integrity condition as the status shows it (ok
// false when it has none).
func IntegrityOf(pod *corev1.Pod) (GateCondition, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == ConditionIntegrity {
			return GateCondition{Status: c.Status, Reason: c.Reason, Message: c.Message}, true
		}
	}
	return GateCondition{}, false
}

// HasGate reports whether the pod's spec lists the integrity condition in
// its readinessGates.
func HasGate(pod *corev1.Pod) bool {
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == ConditionIntegrity {
			return true
		}
	}
	return false
}

// GatePatch is the strategic merge patch of pods/status that sets the
// condition (conditions merge by type, so the kubelet's own are left as
// they are). The UID makes the API server refuse it on a replacement pod
// of the same name. The message is cut and made printable.
func GatePatch(c GateCondition, uid string, now time.Time) ([]byte, error) {
	cond := map[string]any{
		"type":               ConditionIntegrity,
		"status":             c.Status,
		"reason":             c.Reason,
		"message":            eventMessage(c.Message), // paths an attacker chose: cut, printable,
		"lastTransitionTime": metav1.NewTime(now),
	}
	patch := map[string]any{"status": map[string]any{"conditions": []any{cond}}}
	if uid != "" {
		patch["metadata"] = map[string]any{"uid": uid}
	}
	return json.Marshal(patch)
}
