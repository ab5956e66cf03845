package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/sidecar"
)

// Pacing of an instance that stopped with an error (the container could
// not be followed, its baseline was unusable): it is started again after
// a pause that doubles up to maxRetry.
const (
	firstRetry = time.Second
	maxRetry   = time.Minute
)

// protected is one pod the agent protects: an instance per container and
// the pod's readiness gate condition.
type protected struct {
	key, uid string // namespace/name and UID
	digest   string // want.digest of what runs
	gate     *gate
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu        sync.Mutex
	instances map[string]*sidecar.Instance // by container name; nil until started
	invalid   error                        // want.invalid
}

// start protects pod as w asks: an instance per container, and the gate.
func (a *Agent) start(ctx context.Context, pod *corev1.Pod, w *want) {
	ref := kube.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
	api := cachedPod{PodAPI: a.cfg.API(ref), a: a, key: pod.Namespace + "/" + pod.Name, uid: string(pod.UID)}
	ctx, cancel := context.WithCancel(ctx)
	p := &protected{key: pod.Namespace + "/" + pod.Name, uid: string(pod.UID), digest: w.digest, cancel: cancel,
		instances: map[string]*sidecar.Instance{}, invalid: w.invalid}
	log := a.log.With(keyNamespace, pod.Namespace, keyPod, pod.Name)
	p.gate = newGate(api, ref.UID, p.readiness, a.metrics, log)
	p.gate.podChanged(pod)
	a.mu.Lock()
	a.byUID[p.uid] = p
	a.mu.Unlock()
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.gate.run(ctx) }()
	if w.invalid != nil {
		log.Error("pod opts in but cannot be protected as it asks", keyError, w.invalid.Error())
		return
	}
	if err := a.state.writePod(p.uid, p.key); err != nil {
		log.Warn("cannot record the pod's name in its state directory", keyError, err.Error())
	}
	log.Info("protecting pod", keyUID, p.uid, "containers", w.containers)
	for _, name := range w.containers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			a.runContainer(ctx, p, ref, api, w.settings, name, log.With(keyContainer, name))
		}()
	}
}

// stop stops the protection of p and waits for it to end. Its state stays
// (a restarted protection must not re-baseline); forget removes it.
func (a *Agent) stop(p *protected) {
	p.cancel()
	p.wg.Wait()
	a.mu.Lock()
	if a.byUID[p.uid] == p {
		delete(a.byUID, p.uid)
	}
	a.mu.Unlock()
}

// stopAll stops every protection (the agent ends).
func (a *Agent) stopAll() {
	a.mu.Lock()
	ps := make([]*protected, 0, len(a.byUID))
	for _, p := range a.byUID {
		ps = append(ps, p)
	}
	a.mu.Unlock()
	for _, p := range ps {
		a.stop(p)
	}
}

// protectedContainers counts the containers being protected.
func (a *Agent) protectedContainers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.byUID {
		p.mu.Lock()
		n += len(p.instances)
		p.mu.Unlock()
	}
	return n
}

// runContainer protects one container until ctx ends: its metrics,
// labelled with the pod and container, live as long as it does; an
// instance that stops with an error is started again after a pause.
func (a *Agent) runContainer(ctx context.Context, p *protected, ref kube.Pod, api PodAPI, s inject.Settings, name string, log *slog.Logger) {
	labels := prometheus.Labels{"namespace": ref.Namespace, "pod": ref.Name, "container": name}
	m, unregister, err := metrics.NewProtected(prometheus.WrapRegistererWith(labels, a.reg))
	if err != nil {
		log.Error("cannot register the container's metrics", keyError, err.Error())
		return
	}
	defer unregister()
	defer func() {
		p.mu.Lock()
		delete(p.instances, name)
		p.mu.Unlock()
	}()
	wait := firstRetry
	for ctx.Err() == nil {
		cfg, err := a.instanceConfig(ctx, p, ref, api, s, name, m, log)
		if err == nil {
			var in *sidecar.Instance
			if in, err = sidecar.New(cfg, log); err == nil {
				in.OnChange(p.gate.poke)
				p.mu.Lock()
				p.instances[name] = in
				p.mu.Unlock()
				p.gate.poke()
				err = in.Run(ctx)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.setInvalid(fmt.Errorf("container %s: %w", name, err))
			log.Error("protection of the container stopped; it starts again", keyError, err.Error(), "retry_in", wait.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetry)
	}
}

// setInvalid records why a container is not protected now, for the gate.
func (p *protected) setInvalid(err error) {
	p.mu.Lock()
	p.invalid = err
	p.mu.Unlock()
	p.gate.poke()
}

// instanceConfig is the sidecar configuration of one container of the
// pod: the agent's defaults, then what the pod's annotations set, with a
// state directory of its own and the API through the informer's cache.
func (a *Agent) instanceConfig(ctx context.Context, p *protected, ref kube.Pod, api PodAPI, s inject.Settings, name string, m *metrics.Sidecar, log *slog.Logger) (sidecar.Config, error) {
	d := a.cfg.Defaults
	dir, err := a.state.container(p.uid, name)
	if err != nil {
		return sidecar.Config{}, err
	}
	pol, err := s.Policy()
	if err != nil {
		return sidecar.Config{}, err
	}
	given := pol != nil
	if pol == nil {
		pol = d.Policy
	}
	r, err := resolveRefs(ctx, api, s, dir)
	if err != nil {
		return sidecar.Config{}, err
	}
	look := &lookup{a: a, key: p.key, uid: p.uid}
	cfg := sidecar.Config{
		TargetName:     name,
		Names:          look,
		Images:         look,
		Policy:         pol,
		PolicyGiven:    given,
		BaselineSource: r.source,
		BaselineFile:   r.baselineFile,
		VerifyKey:      r.verifyKey,
		Pull:           d.Pull,
		Subject:        s.Subject,
		StateDir:       dir,
		Inotify:        d.Inotify,
		Quick:          durationOr(s.Quick, d.Quick),
		Full:           durationOr(s.Full, d.Full),
		ExecDrift:      d.ExecDrift,
		ExecInterval:   d.ExecInterval,
		DriftPoller:    a.drift,
		Plan:           a.plan(s),
		Version:        a.cfg.Version,
		Evidence:       d.Evidence,
		Finder:         a.finder,
		SharedHashes:   a.hashes,
		Metrics:        m,
		Registry:       a.reg,
	}
	if s.ExecDrift != nil {
		cfg.ExecDrift = *s.ExecDrift
	}
	if s.EvidenceMax != 0 {
		cfg.Evidence.MaxBytes = s.EvidenceMax
	}
	cfg.Kube = kube.NewReporter(api, kube.ReporterConfig{Pod: ref, Events: cfg.Plan.Uses(respond.ActionEvent)}, log, m)
	return cfg, nil
}

// plan is the response plan of a pod: its annotations over the agent's
// defaults.
func (a *Agent) plan(s inject.Settings) respond.Plan {
	d := a.cfg.Defaults.Plan
	p := s.Plan(a.cfg.Defaults.Respond)
	if s.Escalate == nil {
		p.Escalate = d.Escalate
	}
	if p.KillLimit == 0 {
		p.KillLimit = d.KillLimit
	}
	if p.KillWindow == 0 {
		p.KillWindow = d.KillWindow
	}
	p.DeleteMinAge, p.RestoreMaxBytes = d.DeleteMinAge, d.RestoreMaxBytes
	if p.Webhook == nil {
		p.Webhook = d.Webhook
	}
	return p
}

func durationOr(d *time.Duration, def time.Duration) time.Duration {
	if d != nil {
		return *d
	}
	return def
}

// lookup answers a protected container's questions to the API from the
// informer's cache: no request per question.
type lookup struct {
	a        *Agent
	key, uid string
}

// ContainerIDs is sidecar.ContainerLookup.
func (l *lookup) ContainerIDs(_ context.Context, name string) ([]string, string, error) {
	pod := l.a.podByKey(l.key, l.uid)
	if pod == nil {
		return nil, "", fmt.Errorf("%w: %s", kube.ErrPodNotFound, l.key)
	}
	return kube.ContainerIDsOf(pod, name)
}

// ImageIDOf is sidecar.ImageLookup.
func (l *lookup) ImageIDOf(_ context.Context, containerID string) (string, bool, error) {
	pod := l.a.podByKey(l.key, l.uid)
	if pod == nil {
		return "", false, fmt.Errorf("%w: %s", kube.ErrPodNotFound, l.key)
	}
	id, _, ok := kube.ImageID(pod, containerID)
	return id, ok, nil
}

// cachedPod is a pod's API whose reads come from the informer's cache: a
// reporter's GetPod (the delete guard's owner check, the quarantine's
// labels) costs no request, which at 30 pods per agent start is 30
// requests saved.
type cachedPod struct {
	PodAPI
	a        *Agent
	key, uid string
}

// GetPod is kube.API's: the cached pod, or kube.ErrPodNotFound once it is
// gone or was replaced.
func (c cachedPod) GetPod(context.Context) (*corev1.Pod, error) {
	pod := c.a.podByKey(c.key, c.uid)
	if pod == nil {
		return nil, fmt.Errorf("%w: %s (UID %s)", kube.ErrPodNotFound, c.key, c.uid)
	}
	return pod.DeepCopy(), nil
}
