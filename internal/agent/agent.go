// Package agent is podfim's node agent: one process per node (a DaemonSet)
// that protects every container of the node's pods that opt in
// (podfim.io/protect: enabled on the pod or its namespace). It learns the
// pods from an informer on the pods of its node, parses each pod's
// podfim.io/* annotations with the webhook's code (inject.ParseAnnotations)
// and runs, per container, the sidecar's pipeline (sidecar.Instance: follow
// the container through /proc, baseline, detect, respond) with a state
// directory of its own on the node, keyed by pod UID and container name. The
// unready response becomes the pod's readiness gate condition
// podfim.io/integrity (gate.go).
//
// The stages: pods.go decides what is protected, protect.go runs and stops
// the instances of one pod, gate.go converges the pod's condition, state.go
// owns the state directory and its garbage collection.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/cache"

	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/evidence"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/referrer"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/server"
	"github.com/podfim/podfim/internal/sidecar"
	"github.com/podfim/podfim/internal/target"
)

// Log keys.
const (
	keyNamespace = "namespace"
	keyPod       = "pod"
	keyContainer = "container_name" // the sidecar's "container" describes the process
	keyUID       = "uid"
	keyError     = "error"
	keyCount     = "count"
	keyAddr      = "addr"
)

// Defaults are the settings of a protected container that its pod's
// annotations do not set: the agent's flags.
type Defaults struct {
	// Policy is the policy of pods without podfim.io/paths or
	// podfim.io/exclude.
	Policy *policy.Policy
	// Respond is the response of pods without podfim.io/respond; Plan
	// holds the rest of the plan (escalation, kill limit, delete guard,
	// restore bound, webhook) that annotations may override.
	Respond []string
	Plan    respond.Plan
	Inotify bool
	Quick   time.Duration
	Full    time.Duration
	// ExecDrift turns on execution drift where podfim.io/exec-drift does
	// not say; ExecInterval is its poll.
	ExecDrift    bool
	ExecInterval time.Duration
	Evidence     evidence.Limits
	// Pull says how registry baselines are pulled (podfim.io/baseline:
	// registry; the key is the pod's podfim.io/verify-key).
	Pull referrer.Options
}

// Config configures the agent.
type Config struct {
	// NodeName is the node the agent runs on (spec.nodeName, from the
	// downward API).
	NodeName string
	// StateDir is the agent's directory on the node (a hostPath): first-
	// sight baselines, restore originals and evidence, per pod UID and
	// container (state.go).
	StateDir string
	Defaults Defaults
	// Self is the agent's own pod (POD_NAMESPACE, POD_NAME), never
	// protected by itself; zero: unknown.
	Self kube.Pod
	// Listen is the address of /metrics, /healthz and /readyz ("": none).
	Listen  string
	Version string
	// Pods and Namespaces list and watch the node's pods and the
	// namespaces (kube.Node; fakes in tests).
	Pods, Namespaces cache.ListerWatcher
	// API returns the client of one pod (Events, quarantine, delete, the
	// gate condition): kube.Node.ForPod.
	API func(kube.Pod) PodAPI
	// Finder reads /proc (nil: the default, which with hostPID sees every
	// process of the node).
	Finder *target.Finder
	// Registry is where every metric is registered (nil: a new one).
	Registry *prometheus.Registry
	// Resync is how often the informers hand every pod to the
	// reconciler again (0: never).
	Resync time.Duration
}

// PodAPI is what the agent needs of the API server for one pod:
// *kube.Client.
type PodAPI interface {
	kube.API
	PatchPodStatus(ctx context.Context, patch []byte) error
	GetConfigMap(ctx context.Context, name string) (*corev1.ConfigMap, error)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("no node name: set --node-name or NODE_NAME from the downward API (fieldRef spec.nodeName)"))
	} else if len(validation.IsDNS1123Subdomain(c.NodeName)) > 0 {
		errs = append(errs, fmt.Errorf("invalid node name %q", c.NodeName))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required: first-sight baselines must survive an agent restart"))
	}
	if c.Defaults.Policy == nil {
		errs = append(errs, errors.New("no default policy"))
	}
	if c.Pods == nil || c.Namespaces == nil || c.API == nil {
		errs = append(errs, errors.New("agent: no API access (Pods, Namespaces, API)"))
	}
	if c.Defaults.Quick < 0 || c.Defaults.Full < 0 {
		errs = append(errs, errors.New("check intervals must not be negative"))
	}
	for _, e := range c.Defaults.Plan.Validate() {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// Agent is a running node agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics.Agent
	state   *stateDir
	finder  *target.Finder
	// hashes are the hashes of the files the node's protected containers
	// share (their images' layers): each is read once per node per full
	// interval (resetHashes), not once per container.
	hashes *scan.HashCache
	// drift polls execution drift for every protected container that has
	// it on: one thread, one /proc listing per interval for the node.
	drift *drift.Poller

	pods, namespaces cache.SharedIndexInformer

	mu     sync.Mutex
	byUID  map[string]*protected // the pods protected now
	synced bool                  // the informers have synced (readyz)
	wake   chan struct{}         // capacity 1: a reconcile is due
	dirty  map[string]bool       // namespace/name keys to reconcile
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	a, err := New(cfg, log)
	if err != nil {
		return err
	}
	sidecar.SetMemoryLimit(log)
	return a.Run(ctx)
}

// New validates cfg and builds the agent; Run starts it.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := cfg.Defaults.Policy.Compile(); err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := metrics.NewAgent(reg, cfg.Version)
	if err != nil {
		return nil, err
	}
	finder := cfg.Finder
	if finder == nil {
		// hostPID: pid 1 is the host's init, not a pod's infra process,
		// and the host's processes are listed too (SkipDenied).
		finder = &target.Finder{Infra: -1, SkipDenied: true}
	}
	a := &Agent{
		cfg: cfg, log: log, reg: reg, metrics: m, finder: finder,
		state: &stateDir{dir: cfg.StateDir}, hashes: scan.NewHashCache(maxSharedHashes),
		byUID: map[string]*protected{}, wake: make(chan struct{}, 1), dirty: map[string]bool{},
	}
	a.drift = drift.NewPoller(finder, cfg.Defaults.ExecInterval, log)
	if err := m.SharedHashes(reg, a.hashes.Stats); err != nil {
		return nil, err
	}
	a.pods = cache.NewSharedIndexInformer(cfg.Pods, nil, cfg.Resync, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	a.namespaces = cache.NewSharedIndexInformer(cfg.Namespaces, nil, cfg.Resync, cache.Indexers{})
	return a, nil
}

// Run starts the informers, collects the state of pods that are gone,
// serves metrics and probes, and reconciles the protected pods until ctx
// ends; then it stops every protection.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.state.init(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := a.handle(); err != nil {
		return err
	}
	srvErr := a.serve(ctx)
	go a.pods.RunWithContext(ctx)
	go a.namespaces.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced, a.namespaces.HasSynced) {
		return nil // ctx ended
	}
	a.log.Info("agent started: the node's pods are listed", "node", a.cfg.NodeName, keyCount, len(a.pods.GetStore().ListKeys()))
	// Only now is it known which pods exist: the state of the others was
	// left by pods deleted while the agent was down.
	a.collect()
	a.mu.Lock()
	a.synced = true
	a.mu.Unlock()
	defer a.stopAll()
	go a.resetHashes(ctx)
	go func() {
		if err := a.drift.Run(ctx); err != nil {
			a.log.Error("execution drift stopped: /proc cannot be listed", keyError, err.Error())
		}
	}()
	for {
		a.reconcileDirty(ctx)
		select {
		case <-ctx.Done():
			return nil
		case err := <-srvErr:
			return err
		case <-a.wake:
		}
	}
}

// maxSharedHashes bounds the shared hashes: about 100 bytes each, 100 MiB
// at most, for a million distinct file versions on the node (containers of
// one image share theirs).
const maxSharedHashes = 1 << 20

// resetHashes empties the shared hashes every full interval (an hour when
// full checks are off), so that every file of the node is read at least
// once per interval: a full check is evidence that the bytes were read.
func (a *Agent) resetHashes(ctx context.Context) {
	every := a.cfg.Defaults.Full
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hits, misses, held := a.hashes.Reset()
			a.log.Info("shared hashes of the node's files reset", "hits", hits, "misses", misses, "held", held)
		}
	}
}

// handle registers the informers' handlers: every change of a pod, and of
// a namespace's labels, marks pods for the reconciler.
func (a *Agent) handle() error {
	onPod := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			a.mark(key)
		}
	}
	if _, err := a.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
		DeleteFunc: onPod,
	}); err != nil {
		return err
	}
	onNamespace := func(obj any) {
		name, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			return
		}
		keys, _ := a.pods.GetIndexer().IndexKeys(cache.NamespaceIndex, name)
		for _, k := range keys {
			a.mark(k)
		}
	}
	_, err := a.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onNamespace,
		UpdateFunc: func(_, obj any) { onNamespace(obj) },
		DeleteFunc: onNamespace,
	})
	return err
}

// mark queues a pod key for the reconciler.
func (a *Agent) mark(key string) {
	a.mu.Lock()
	a.dirty[key] = true
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// serve serves /metrics, /healthz and /readyz (ready once the informers
// have synced) on cfg.Listen until ctx ends.
func (a *Agent) serve(ctx context.Context) <-chan error {
	errc := make(chan error, 1)
	if a.cfg.Listen == "" {
		return errc
	}
	srv := server.New(a.cfg.Listen, a.reg, synced{a}, nil)
	srv.LimitConns(0, nil)
	go func() {
		select {
		case <-srv.Listening():
			a.log.Info("serving metrics and probes", keyAddr, srv.Addr())
		case <-ctx.Done():
		}
	}()
	go func() { errc <- srv.Run(ctx) }()
	return errc
}

// synced is the agent's /readyz: ready once the pods are listed.
type synced struct{ a *Agent }

func (s synced) Readiness(int) (bool, []string, int) {
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	return s.a.synced, nil, 0
}
