package agent

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
)

// Pacing of failed patches of the condition.
const (
	gateFirstRetry = time.Second
	gateMaxRetry   = 30 * time.Second
)

// readiness is the pod's integrity condition as its containers' instances
// see it: True once every container's first full check completed and no
// violation holds it out of service, False otherwise, with the reasons.
func (p *protected) readiness() kube.GateCondition {
	p.mu.Lock()
	invalid := p.invalid
	names := make([]string, 0, len(p.instances))
	for n := range p.instances {
		names = append(names, n)
	}
	slices.Sort(names)
	ready := make(map[string][]string, len(names))
	for _, n := range names {
		if ok, why := p.instances[n].Ready(); !ok {
			ready[n] = why
		}
	}
	p.mu.Unlock()
	if invalid != nil && len(names) == 0 {
		return kube.GateCondition{Status: corev1.ConditionFalse, Reason: kube.GateUnverified, Message: invalid.Error()}
	}
	if len(names) == 0 {
		return kube.GateCondition{Status: corev1.ConditionFalse, Reason: kube.GateUnverified, Message: "no container verified yet"}
	}
	var lines []string
	reason := kube.GateUnverified
	for _, n := range names {
		for _, why := range ready[n] {
			if strings.HasPrefix(why, "integrity violation") || strings.HasPrefix(why, "and ") {
				reason = kube.GateViolation
			}
			lines = append(lines, n+": "+why)
		}
	}
	if len(lines) == 0 {
		return kube.GateCondition{Status: corev1.ConditionTrue, Reason: kube.GateVerified, Message: "every container verified against its baseline; no violation open"}
	}
	return kube.GateCondition{Status: corev1.ConditionFalse, Reason: reason, Message: strings.Join(lines, "; ")}
}

// gate converges the pod's podfim.io/integrity condition to what the
// instances report: it is woken on every change of their readiness
// (poke) and of the pod (podChanged), and patches pods/status only when
// the condition differs from what the pod shows and from what it last
// applied. Failed patches are retried with backoff.
type gate struct {
	api     PodAPI
	uid     string
	want    func() kube.GateCondition
	metrics *metrics.Agent
	log     *slog.Logger
	wake    chan struct{}

	mu      sync.Mutex
	shown   *kube.GateCondition // as the informer's pod shows it; nil: absent
	applied *kube.GateCondition // last patched; nil: none (or the pod showed otherwise since)
	since   time.Time           // lastTransitionTime of the status applied
	lastErr string              // the last patch error, logged once
}

func newGate(api PodAPI, uid string, want func() kube.GateCondition, m *metrics.Agent, log *slog.Logger) *gate {
	return &gate{api: api, uid: uid, want: want, metrics: m, log: log, wake: make(chan struct{}, 1)}
}

// poke wakes the gate: an instance's readiness may have changed.
func (g *gate) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// podChanged tells the gate how the pod shows the condition now.
func (g *gate) podChanged(pod *corev1.Pod) {
	g.mu.Lock()
	if c, ok := kube.IntegrityOf(pod); ok {
		g.shown = &c
	} else {
		g.shown = nil
	}
	if g.applied != nil && (g.shown == nil || *g.shown != *g.applied) {
		// Someone else changed it, or the informer shows an older view:
		// patch again if it still differs from what is wanted.
		g.applied = nil
	}
	g.mu.Unlock()
	g.poke()
}

// run converges the condition until ctx ends.
func (g *gate) run(ctx context.Context) {
	var retry <-chan time.Time
	wait := gateFirstRetry
	for {
		if err := g.sync(ctx); err != nil {
			retry = time.After(wait)
			wait = min(2*wait, gateMaxRetry)
		} else {
			retry, wait = nil, gateFirstRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		case <-retry:
		}
	}
}

// sync patches the condition when it is not what the instances want.
func (g *gate) sync(ctx context.Context) error {
	want := g.want()
	g.mu.Lock()
	done := (g.applied != nil && *g.applied == want) || (g.applied == nil && g.shown != nil && *g.shown == want)
	since := g.since
	if g.applied == nil || g.applied.Status != want.Status || since.IsZero() {
		since = time.Now()
	}
	g.mu.Unlock()
	if done {
		return nil
	}
	patch, err := kube.GatePatch(want, g.uid, since)
	if err == nil {
		err = g.api.PatchPodStatus(ctx, patch)
	}
	g.metrics.GatePatched(err)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && err.Error() != g.lastErr {
			g.log.Error("cannot set the pod's integrity condition; retrying", keyError, err.Error())
		}
		g.lastErr = err.Error()
		return err
	}
	if g.applied == nil || g.applied.Status != want.Status {
		g.log.Info("integrity condition set", "status", string(want.Status), "reason", want.Reason, "message", want.Message)
	}
	g.lastErr = ""
	g.applied, g.since = &want, since
	return nil
}
