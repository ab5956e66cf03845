// Package sidecar wires the stages of podfim's sidecar together: it follows
// the app container (target), gets its trusted baseline (a file, or the
// container at first sight kept in a private state directory), runs the
// detection loop (watch) on the container's root, passes findings to the
// responder (respond) and serves metrics and probes (server).
package sidecar

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/evidence"
	"github.com/podfim/podfim/internal/footprint"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/origin"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/referrer"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/server"
	"github.com/podfim/podfim/internal/target"
	"github.com/podfim/podfim/internal/watch"
)

// Log keys.
const (
	keyContainer  = "container"
	keyPID        = "pid"
	keyExe        = "exe"
	keyEvent      = "event"
	keyBaseline   = "baseline"
	keyEntries    = "entries"
	keyDigest     = "digest"
	keySource     = "source"
	keyError      = "error"
	keyAddr       = "addr"
	keyName       = "name"
	keyIDs        = "ids"
	keyImage      = "image"
	keyRetry      = "retry_in"
	keyWaited     = "waited"
	keyReleased   = "released_bytes"
	keyTook       = "took"
	keyPath       = "path"
	keyCount      = "count"
	keyLimit      = "limit"
	keyIndexBytes = "index_bytes"
)

// Config is the validated configuration of a sidecar.
type Config struct {
	Selector target.Selector
	// TargetName selects the app container by its name in the pod,
	// resolved to container IDs through Names (the Kubernetes API).
	// Exclusive with Selector.Exe and Selector.ContainerID.
	TargetName string
	Names      ContainerLookup
	// Policy is the policy given (PolicyGiven) or the built-in one. A
	// baseline that stores its policy is compared under that one unless a
	// policy was given; a given policy with another digest than the
	// baseline's is refused unless AllowPolicyChange (matcherFor).
	Policy            *policy.Policy
	PolicyGiven       bool
	AllowPolicyChange bool
	// BaselineSource is where the baseline comes from; "" means file when
	// BaselineFile is set, first-sight otherwise. registry and configmap
	// are bound to the running image (imagesource.go) and need VerifyKey.
	BaselineSource metrics.BaselineSource
	// BaselineFile is the trusted baseline (source file), or the directory
	// of a mounted ConfigMap of baselines (source configmap); unset, the
	// container is baselined at first sight into StateDir.
	BaselineFile string
	VerifyKey    ed25519.PublicKey
	// ImageDigest names the image the app container runs, REPO@sha256:...
	// (or sha256:...), for the image-bound sources when the API cannot
	// tell (no token): the webhook sets it from a pod spec that names the
	// image by digest.
	ImageDigest string
	// Pull says how the registry source reaches the image's registry
	// (the pod's image pull secret as Authfile, plain HTTP).
	Pull referrer.Options
	// Subject, when set, is the subject a BaselineFile must have been made
	// for (baseline --subject): with VerifyKey, a signed baseline of
	// another tree or image is refused instead of trusted.
	Subject     string
	StateDir    string
	Inotify     bool
	Quick, Full time.Duration
	Retarget    time.Duration
	// ExecDrift turns on execution drift (package drift): every process of
	// the app container is checked against the baseline, every
	// ExecInterval (drift.DefaultInterval if 0).
	ExecDrift    bool
	ExecInterval time.Duration
	// DriftPoller, when set, polls execution drift instead of a thread of
	// the instance's own (the node agent's one poller for all its
	// containers; ExecInterval is then the poller's).
	DriftPoller *drift.Poller
	Plan        respond.Plan
	Listen      string
	Version     string
	// Evidence bounds what is kept of changed and added files before the
	// response, in StateDir/evidence (package evidence); zero fields take
	// the defaults. Evidence is kept whenever StateDir is set.
	Evidence evidence.Limits
	// Finder overrides target discovery (tests); nil is the default /proc.
	Finder *target.Finder
	// SharedHashes, when set, is the node agent's cache of the hashes of
	// files containers share (their image's layers): a file of the image
	// is read once per node, not once per container (scan.SharedHashes).
	SharedHashes scan.SharedHashes
	// Kube, when set, is the Kubernetes API side of the responses
	// (Events, quarantine, delete); Run starts and stops its worker. nil
	// means no API access: those actions are skipped or fail, nothing else
	// changes.
	Kube KubeReporter
	// Images, when set, tells the image ID of the app container, so that a
	// first-sight baseline is retaken (not alerted on) when the container
	// runs a new image. nil: the stored baseline is always used.
	Images ImageLookup
	// Metrics, when set, is where the metrics are registered (the CLI
	// shares them with the Kubernetes client); nil: Run makes its own.
	Metrics  *metrics.Sidecar
	Registry *prometheus.Registry
}

// KubeReporter is the background writer to the Kubernetes API
// (*kube.Reporter).
type KubeReporter interface {
	respond.Kube
	Run(ctx context.Context)
	Close(ctx context.Context) error
}

// ImageLookup finds the image ID of a container of the pod by its ID
// (*kube.Client).
type ImageLookup interface {
	ImageIDOf(ctx context.Context, containerID string) (imageID string, ok bool, err error)
}

// Source is the baseline source the configuration selects.
func (c *Config) Source() metrics.BaselineSource {
	if c.BaselineSource != "" {
		return c.BaselineSource
	}
	if c.BaselineFile != "" {
		return metrics.BaselineFile
	}
	return metrics.BaselineFirstSight
}

// validateSource checks the baseline source and what it needs.
func (c *Config) validateSource() []error {
	var errs []error
	src := c.Source()
	switch src {
	case metrics.BaselineFirstSight:
		if c.Subject != "" {
			errs = append(errs, errors.New("--subject requires --baseline: a first-sight baseline is made for whatever runs"))
		}
		if c.BaselineFile != "" {
			errs = append(errs, errors.New("--baseline-source first-sight takes no --baseline"))
		}
		if c.StateDir == "" {
			errs = append(errs, errors.New("--state-dir is required when the baseline is taken at first sight (no --baseline)"))
		}
	case metrics.BaselineFile, metrics.BaselineConfigMap:
		if c.BaselineFile == "" {
			errs = append(errs, fmt.Errorf("--baseline-source %s needs --baseline (a file; for configmap the mounted ConfigMap's directory)", src))
		}
	case metrics.BaselineRegistry:
		if c.BaselineFile != "" {
			errs = append(errs, errors.New("--baseline-source registry takes no --baseline: it pulls the running image's baseline"))
		}
		if c.StateDir == "" {
			errs = append(errs, errors.New("--baseline-source registry keeps the pulled baseline in --state-dir: set it"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown --baseline-source %q: want registry, configmap, file or first-sight", src))
	}
	if (src == metrics.BaselineRegistry || src == metrics.BaselineConfigMap) && c.VerifyKey == nil {
		// Fail closed: anyone can write an unsigned baseline for any digest.
		errs = append(errs, fmt.Errorf("--baseline-source %s needs --verify-key: only a signed baseline can vouch for an image", src))
	}
	if c.ImageDigest != "" {
		if _, err := parseImageRef(c.ImageDigest); err != nil {
			errs = append(errs, fmt.Errorf("invalid --image-digest: %w", err))
		}
	}
	return errs
}

// restores reports whether the plan may restore files.
func (c *Config) restores() bool {
	for _, a := range append(append([]respond.Action{}, c.Plan.Actions...), c.Plan.Escalate...) {
		if a == respond.ActionRestore {
			return true
		}
	}
	return false
}

// minExecInterval is the shortest --exec-interval: below it polling /proc
// costs more than the millicore execution drift is allowed idle.
const minExecInterval = 10 * time.Millisecond

// Validate checks the configuration before anything starts.
func (c *Config) Validate() error {
	var errs []error
	if c.Policy == nil {
		errs = append(errs, errors.New("no policy"))
	}
	if err := c.Selector.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TargetName != "" {
		if c.Selector.Exe != "" {
			errs = append(errs, errors.New("--target-name and --target-exe are mutually exclusive: select the app container one way"))
		}
		if c.Selector.ContainerID != "" {
			errs = append(errs, errors.New("--target-name and --target-container are mutually exclusive: select the app container one way"))
		}
		if len(validation.IsDNS1123Label(c.TargetName)) > 0 { // the API server's rule for container names
			errs = append(errs, fmt.Errorf("invalid --target-name %q: a container name is a DNS label (lower-case letters, digits and '-', at most 63)", c.TargetName))
		}
	}
	errs = append(errs, c.validateSource()...)
	if c.Quick < 0 || c.Full < 0 {
		errs = append(errs, errors.New("check intervals must not be negative"))
	}
	if c.ExecInterval < 0 || (c.ExecInterval > 0 && c.ExecInterval < minExecInterval) {
		errs = append(errs, fmt.Errorf("--exec-interval %s: want at least %s (each poll lists /proc)", c.ExecInterval, minExecInterval))
	}
	if c.Quick == 0 && c.Full == 0 && !c.Inotify {
		errs = append(errs, errors.New("nothing would detect changes: enable inotify or set a quick or full interval"))
	}
	for _, e := range c.Plan.Validate() {
		errs = append(errs, e)
	}
	if l := c.Evidence; l.MaxBytes < 0 || l.MaxFileBytes < 0 || l.MaxDiffBytes < 0 || l.MaxRecords < 0 {
		errs = append(errs, errors.New("evidence limits (--evidence-max-bytes, --evidence-max-file-bytes, --evidence-max-diff-bytes) must not be negative"))
	}
	if c.restores() && c.StateDir == "" {
		errs = append(errs, errors.New("the restore action keeps the original bytes in --state-dir: set it"))
	}
	return errors.Join(errs...)
}

// Run runs the sidecar until ctx ends: it validates cfg, starts the
// responder (and the Kubernetes API worker), loads a baseline file, serves
// metrics and probes, then follows the app container and monitors each
// container it finds.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	in, err := New(cfg, log)
	if err != nil {
		return err
	}
	SetMemoryLimit(log)
	return in.Run(ctx)
}

// Instance protects one app container: the sidecar's whole pipeline
// without the process-wide settings (the memory limit) that Run adds. The
// node agent (package agent) runs one per protected container, with
// Config.Listen empty and readiness read through Ready.
type Instance struct {
	s   *sidecar
	reg *prometheus.Registry
}

// New validates cfg and builds an instance; Run starts it.
func New(cfg Config, log *slog.Logger) (*Instance, error) {
	s, reg, err := newSidecar(cfg, log)
	if err != nil {
		return nil, err
	}
	return &Instance{s: s, reg: reg}, nil
}

// Ready reports what /readyz would: whether the container may receive
// traffic and, if not, why (server.Ready).
func (in *Instance) Ready() (bool, []string) {
	s := in.s
	s.mu.Lock()
	resp := s.resp
	s.mu.Unlock()
	if resp == nil {
		return false, []string{"not started"}
	}
	return server.Ready(readiness{resp, s})
}

// OnChange registers f, called (without locks held, possibly from several
// goroutines) whenever what Ready reports may have changed. Call it before
// Run.
func (in *Instance) OnChange(f func()) { in.s.onChange = f }

// Run runs the instance until ctx ends; see the package's Run.
func (in *Instance) Run(ctx context.Context) error {
	s, cfg := in.s, in.s.cfg
	defer s.startResponder()()
	if cfg.Source() == metrics.BaselineFile {
		b, idx, err := loadIndexFile(cfg.BaselineFile, baseline.ReadOptions{VerifyKey: cfg.VerifyKey, MaxEntries: s.maxEntries(),
			Binding: baseline.Binding{Subject: cfg.Subject}})
		if err != nil {
			return err
		}
		if err := s.setBaseline(b, idx, metrics.BaselineFile); err != nil {
			return fmt.Errorf("baseline %s: %w", cfg.BaselineFile, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sel, stopNames := s.selector(ctx)
	defer stopNames()
	return s.follow(ctx, sel, s.serve(ctx, in.reg))
}

// newSidecar checks cfg and builds the sidecar's state, with the metrics
// of cfg or new ones on a new registry (returned for /metrics).
func newSidecar(cfg Config, log *slog.Logger) (*sidecar, *prometheus.Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if cfg.TargetName != "" && cfg.Names == nil {
		return nil, nil, errors.New("sidecar: a target name needs a container lookup (Config.Names)")
	}
	matcher, err := cfg.Policy.Compile()
	if err != nil {
		return nil, nil, err
	}
	reg, m := cfg.Registry, cfg.Metrics
	if reg == nil || m == nil {
		reg = prometheus.NewRegistry()
		if m, err = metrics.NewSidecar(reg, cfg.Version); err != nil {
			return nil, nil, err
		}
	}
	finder := cfg.Finder
	if finder == nil {
		finder = &target.Finder{}
	}
	s := &sidecar{cfg: cfg, log: log, given: matcher, matcher: matcher, metrics: m, finder: finder, accepted: watch.NewAccepted(),
		verified: make(chan struct{}), refused: make(chan struct{})}
	s.evidence = s.openEvidence()
	return s, reg, nil
}

// startResponder starts the Kubernetes API worker (when cfg.Kube is set)
// and the responder. The returned function stops both: the responder
// first, then the worker, which gets a moment to let out the Events of the
// last moments.
func (s *sidecar) startResponder() (stop func()) {
	var k respond.Kube
	stopKube := func() {}
	if kr := s.cfg.Kube; kr != nil {
		k = kr
		kctx, kcancel := context.WithCancel(context.Background())
		kdone := make(chan struct{})
		go func() { defer close(kdone); kr.Run(kctx) }()
		stopKube = func() {
			closeCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			kr.Close(closeCtx)
			kcancel()
			<-kdone
		}
		if s.cfg.Plan.Uses(respond.ActionQuarantine) {
			// A label left by an earlier run of the sidecar is ours: it is
			// set again if the first full check finds the violation again,
			// and the pod is unready until that check anyway.
			kr.SetQuarantine(false, "")
		}
	}
	resp := respond.New(s.cfg.Plan, s.log, s.metrics, s, k, nil)
	resp.OnChange(s.changed)
	s.mu.Lock()
	s.resp = resp
	s.mu.Unlock()
	if d, ok := s.cfg.Kube.(interface{ OnDeleteFailed(func(error)) }); ok {
		// A deletion the API server refused leaves the pod running: the
		// escalation runs then, as when the delete guard refuses.
		d.OnDeleteFailed(s.resp.DeleteFailed)
	}
	return func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.resp.Close(closeCtx)
		stopKube()
	}
}

// selector returns the configured selector of the app container. With a
// target name it resolves the name through the API in the background until
// the returned function stops it.
func (s *sidecar) selector(ctx context.Context) (target.Selector, func()) {
	sel := s.cfg.Selector
	if s.cfg.TargetName == "" {
		return sel, func() {}
	}
	retarget := s.cfg.Retarget
	if retarget <= 0 {
		retarget = target.DefaultInterval
	}
	r := newNameResolver(s.cfg.TargetName, s.cfg.Names, lookupEvery*retarget, s.log)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx)
	}()
	sel.Resolver = r
	return sel, func() {
		cancel()
		<-done
	}
}

// serveGrace is how long serve waits for the first full check before it
// serves anyway: less than the 30 s of failed liveness probes after which
// the kubelet restarts the sidecar (the chart's periodSeconds 10 times
// failureThreshold 3), so a slow first check of a large tree does not get
// the sidecar restarted in a loop.
const serveGrace = 20 * time.Second

// serve serves metrics and probes on cfg.Listen (nothing when it is empty)
// until ctx ends, once the first full check of the app container has
// completed and its findings were answered, every baseline for its image
// was refused (nothing can be verified, the pod must show unready), or
// serveGrace has passed. The
// app shares the pod's network namespace: whatever it does to the port, a
// sidecar (re)started under a flood has detected and responded before it
// serves anything the app can flood. The channel tells when the server
// fails (the port is taken, say).
func (s *sidecar) serve(ctx context.Context, reg *prometheus.Registry) <-chan error {
	srvErr := make(chan error, 1)
	if s.cfg.Listen == "" {
		return srvErr
	}
	go func() {
		t := time.NewTimer(serveGrace)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-s.verified:
		case <-s.refused: // fail closed: nothing is verified, and /readyz says so
		case <-t.C:
			s.log.Warn("serving before the first full check of the app container completed", keyWaited, serveGrace.String())
		}
		srv := server.New(s.cfg.Listen, reg, readiness{s.resp, s}, s.health)
		srv.LimitConns(0, s.connOverflow())
		go func() {
			select {
			case <-srv.Listening():
				s.log.Info("serving metrics and probes", keyAddr, srv.Addr())
			case <-ctx.Done():
			}
		}()
		srvErr <- srv.Run(ctx)
	}()
	return srvErr
}

// connOverflow returns the server's callback for a connection refused or
// evicted at the cap: counted each time, logged at most once a minute with
// the count since, so that a flood cannot turn into a flood of log lines.
func (s *sidecar) connOverflow() func() {
	var mu sync.Mutex
	var last time.Time
	n := 0
	return func() {
		s.metrics.Overflow(metrics.LimitConnections, 1)
		mu.Lock()
		defer mu.Unlock()
		n++
		if now := time.Now(); now.Sub(last) >= time.Minute {
			s.log.Warn("connections to the metrics and probe port refused or evicted at the cap", keyCount, n, keyLimit, server.DefaultMaxConns)
			last, n = now, 0
		}
	}
}

// follow is the event loop: it follows the app container selected by sel
// and monitors each container it finds, one at a time, until ctx ends, the
// server fails (srvErr) or the container can no longer be followed.
func (s *sidecar) follow(ctx context.Context, sel target.Selector, srvErr <-chan error) error {
	events := make(chan target.Event, 4)
	followErr := make(chan error, 1)
	go func() { followErr <- s.finder.Follow(ctx, sel, s.cfg.Retarget, events) }()

	var cur *running
	defer func() {
		if cur != nil {
			cur.stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srvErr:
			return err
		case err := <-followErr:
			if err != nil {
				return fmt.Errorf("failed to follow the target container: %w", err)
			}
			return nil
		case ev := <-events:
			if cur != nil {
				cur.stop()
				cur = nil
			}
			cur = s.targetEvent(ctx, ev)
		}
	}
}

// targetEvent handles an event of the app container once the monitor of
// the previous one is stopped, and returns the monitor of the new one (nil
// when it was lost).
func (s *sidecar) targetEvent(ctx context.Context, ev target.Event) *running {
	c := ev.Container
	shown := c
	if shown == nil {
		shown = ev.Previous // Lost: the container that ended
	}
	attrs := []any{keyEvent, ev.Kind.String()}
	if shown != nil {
		attrs = append(attrs, keyContainer, shown.String(), keyPID, shown.PID, keyExe, shown.Exe)
	}
	s.log.Info("target "+ev.Kind.String(), attrs...)
	// Whatever the event, no container is verified now: a restarted one
	// (even without a Lost in between) is ready only after its own first
	// full check.
	s.resp.TargetChanged(ev.Kind == target.Restarted)
	if ev.Kind == target.Lost {
		s.setTarget(nil)
		return nil
	}
	if ev.Kind == target.Restarted {
		s.metrics.TargetRestarted()
	}
	s.setTarget(c)
	return s.start(ctx, c)
}

// running is a monitor of one container.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

// start monitors c until the returned monitor is stopped.
func (s *sidecar) start(ctx context.Context, c *target.Container) *running {
	ctx, cancel := context.WithCancel(ctx)
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := s.monitor(ctx, c); err != nil && ctx.Err() == nil {
			s.log.Error("monitoring the target failed; waiting for it to restart", keyContainer, c.String(), keyError, err.Error())
			s.setHealth(err)
		}
	}()
	return r
}

// sidecar is the state shared by the loop, the monitor and the responder.
type sidecar struct {
	cfg Config
	log *slog.Logger
	// given is the matcher of Config.Policy: first-sight baselines are
	// taken with it, and it bounds the baselines read (maxEntries).
	given   *policy.Matcher
	metrics *metrics.Sidecar
	finder  *target.Finder
	resp    *respond.Responder
	// evidence keeps changed files before the response (nil: no state
	// directory, or it could not be opened: logged at start).
	evidence *evidence.Store

	mu    sync.Mutex
	base  *baseline.Baseline // its header: the entries are in index
	index *watch.Index
	// matcher is the policy base is compared under (matcherFor).
	matcher   *policy.Matcher
	target    *target.Container
	writer    *rootWriter // restores into the current target's root
	accepted  *watch.Accepted
	objects   *objects // original bytes of restorable files (nil: restore off)
	healthErr error
	// verified is closed when the first full check of an app container
	// completed (see serve).
	verified     chan struct{}
	verifiedOnce sync.Once
	// refused is closed at the first refusal of every baseline for the
	// running image (see imageBaseline): there is nothing to verify until
	// a usable one appears, so serve need not wait for a first full check
	// that cannot come, and /readyz and the refusal metric are served at
	// once instead of after serveGrace.
	refused     chan struct{}
	refusedOnce sync.Once
	// imageID is the image ID of the container being monitored, when the
	// API told it ("" otherwise).
	imageID string
	// refusal is why the running image's baseline was last refused, for
	// /readyz; "" once one is in use.
	refusal string
	// onChange, when set, is told when readiness may have changed
	// (Instance.OnChange).
	onChange func()
}

// changed tells onChange that readiness may have changed.
func (s *sidecar) changed() {
	if s.onChange != nil {
		s.onChange()
	}
}

func (s *sidecar) health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthErr
}

func (s *sidecar) setHealth(err error) {
	s.mu.Lock()
	s.healthErr = err
	s.mu.Unlock()
}

func (s *sidecar) setTarget(c *target.Container) {
	s.mu.Lock()
	s.target = c
	s.mu.Unlock()
}

// setBaseline installs the baseline b (its header) and its index (every
// source reads its file straight into the index: loadIndexFile).
func (s *sidecar) setBaseline(b *baseline.Baseline, idx *watch.Index, source metrics.BaselineSource) error {
	m, err := s.matcherFor(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.base, s.index, s.matcher = b, idx, m
	s.mu.Unlock()
	s.metrics.SetBaseline(fmt.Sprintf("%x", b.Digest), source, b.Signed)
	s.metrics.SetFilesMonitored(idx.Len())
	s.log.Info("baseline loaded", keySource, source, keyEntries, idx.Len(), keyDigest, fmt.Sprintf("%x", b.Digest),
		keyIndexBytes, idx.Bytes())
	return nil
}

// monitor verifies and watches one container until ctx ends or the
// container can no longer be read.
func (s *sidecar) monitor(ctx context.Context, c *target.Container) error {
	f, err := c.OpenRoot()
	if err != nil {
		return err
	}
	root, err := scan.OpenRoot("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	f.Close()
	if err != nil {
		return err
	}
	defer root.Close()

	idx, err := s.baselineFor(ctx, c, root)
	if err != nil {
		return err
	}
	if s.cfg.restores() {
		// Keep the original bytes of every restorable file the container
		// still holds unchanged (verified against the baseline's hash).
		maxBytes := s.cfg.Plan.RestoreMaxBytes
		if maxBytes <= 0 {
			maxBytes = respond.DefaultRestoreMaxBytes
		}
		o := &objects{dir: filepath.Join(s.cfg.StateDir, "objects"), maxBytes: maxBytes}
		kept, err := o.keep(root, idx)
		if err != nil {
			return err
		}
		s.log.Info("kept original content for restore", keyEntries, kept)
		s.mu.Lock()
		s.objects = o
		s.writer = &rootWriter{root: root, lookup: idx.Lookup}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.writer = nil
			s.mu.Unlock()
		}()
	}
	matcher := s.currentMatcher()
	l := matcher.Limits()
	k := &sink{s: s, root: root, attrib: newAttribState(time.Now())}
	s.mu.Lock()
	var image *baseline.Image
	if s.base != nil {
		image = s.base.Image
	}
	s.mu.Unlock()
	// The mount table, read once: origins and tolerance here, volumes for
	// execution drift below.
	mounts, mountsErr := c.Mounts()
	tolerate, origins := s.mountTolerance(mounts, mountsErr, image)
	mon := watch.New(root, watch.Config{
		Matcher:  matcher,
		Baseline: idx,
		Scan:     scan.Options{MaxFiles: l.MaxFiles, MaxDepth: l.MaxDepth, MaxFileBytes: l.MaxFileBytes, Shared: s.cfg.SharedHashes},
		Inotify:  s.cfg.Inotify,
		Quick:    s.cfg.Quick,
		Full:     s.cfg.Full,
		Accepted: s.accepted,
		Tolerate: tolerate,
		Origins:  origins,
		Mappings: s.mappings(c),
	}, k)
	k.mon = mon
	s.setHealth(nil)
	if s.cfg.ExecDrift {
		stop := s.startDrift(ctx, c, root, idx, mounts)
		defer stop()
	}
	return mon.Run(ctx)
}

// baselineFor returns the index of the baseline to verify c against: the
// file's, the one bound to the image c runs, or the first-sight one (taken
// now if there is none).
func (s *sidecar) baselineFor(ctx context.Context, c *target.Container, root *scan.Root) (*watch.Index, error) {
	switch s.cfg.Source() {
	case metrics.BaselineRegistry, metrics.BaselineConfigMap:
		if _, err := s.imageBaseline(ctx, c); err != nil {
			return nil, err
		}
	case metrics.BaselineFirstSight:
		s.checkImage(ctx, c)
	}
	s.mu.Lock()
	b, idx := s.base, s.index
	s.mu.Unlock()
	if b == nil || idx == nil {
		return s.firstSight(ctx, root)
	}
	return idx, nil
}

// maxMappings bounds the writable shared mappings read per look at the
// app's processes; the rest are counted (podfim_limit_overflows_total) and
// logged. A few files mapped by an app are normal; thousands are the app
// trying to hide one among them, which the count shows.
const maxMappings = 256

// mappings returns the monitor's view of the writable shared mappings of
// c's processes (watch.Config.Mappings). It logs each process newly seen
// holding one of a protected file, with its pid and executable, once per
// process and path; the monitor reports the file as a finding (attribute
// mmap). The monitor calls it from its event loop and from the goroutine of
// whole-tree checks at once, so the set of logged mappings has a lock.
func (s *sidecar) mappings(c *target.Container) func() []watch.Mapping {
	var mu sync.Mutex
	logged := map[target.Mapping]bool{}
	return func() []watch.Mapping {
		mu.Lock()
		defer mu.Unlock()
		ms, over, err := s.finder.WritableSharedMappings(c, maxMappings)
		if err != nil {
			s.log.Warn("cannot read the app's memory mappings; full checks still hash every file", keyError, err.Error())
		}
		if over > 0 {
			s.metrics.Overflow(metrics.LimitMappings, over)
			s.log.Warn("more writable shared mappings than are read per check", keyCount, over, keyLimit, maxMappings)
		}
		now := make(map[target.Mapping]bool, len(ms))
		out := make([]watch.Mapping, 0, len(ms))
		for _, m := range ms {
			out = append(out, watch.Mapping{PID: m.PID, Exe: m.Exe, Path: m.Path})
			if !watch.Protected(s.currentMatcher(), m.Path) {
				continue
			}
			now[m] = true
			if !logged[m] {
				s.log.Warn("a process of the app maps a protected file shared and writable", keyPath, m.Path, keyPID, m.PID, keyExe, m.Exe)
			}
		}
		logged = now
		return out
	}
}

// mountTolerance takes the container's mount table, read once when its
// monitor starts (a mount the app makes later is the app's, not the
// runtime's), and returns what it tolerates and how findings are
// classified: the directories above the container's mount points may
// differ from the baseline in what the runtime changes when it creates
// those mount points in a fresh container of the same image (see
// watch.Tolerated): without it, every restart of the app would be a
// finding, and the kill response would kill each clean new container. The
// classifier says where each finding comes from and drops the runtime's
// own additions (origin.Classifier).
//
// mounts is the container's mount table, or nil when reading it failed
// (err).
func (s *sidecar) mountTolerance(mounts *origin.Mounts, err error, image *baseline.Image) (map[string]attr.Set, *origin.Classifier) {
	var layers []string
	if image != nil {
		layers = image.Layers
	}
	if err != nil {
		// Compare everything: a restart, and what the runtime mounts over
		// an image's files, may then be reported, which is noisy but never
		// blind; origins then say nothing of volumes. A table over its
		// bounds is the app's doing (only CAP_SYS_ADMIN mounts): counted.
		if errors.Is(err, origin.ErrTooLarge) {
			s.metrics.Overflow(metrics.LimitMounts, 1)
		}
		s.log.Warn("cannot read the container's mount table; what the runtime adds is compared in full, and execution drift cannot tell volumes", keyError, err.Error())
		return nil, origin.New(image != nil, layers, nil)
	}
	dirs := mounts.Ancestors()
	tol := make(map[string]attr.Set, len(dirs))
	for _, d := range dirs {
		tol[d] = watch.Tolerated
	}
	s.log.Debug("mount points of the container: the runtime's, not findings", "paths", mounts.Points())
	return tol, origin.New(image != nil, layers, mounts)
}

// currentMatcher is the policy the baseline in use is compared under.
func (s *sidecar) currentMatcher() *policy.Matcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.matcher == nil {
		return s.given
	}
	return s.matcher
}

// maxEntries bounds the baselines the sidecar reads by the policy's
// maxFiles: a scan under the policy never records more, and a baseline is
// held whole in memory (a 150 KB file of 3M identical entries cost 2.26
// GB), so more is refused before it is decoded (issue 11 item 4).
func (s *sidecar) maxEntries() int {
	return min(s.given.Limits().MaxFiles, baseline.MaxEntries)
}

// firstSight returns the stored first-sight baseline, or takes it now. A
// stored baseline always wins: a restarted sidecar must never re-baseline a
// container that may have been tampered with since.
func (s *sidecar) firstSight(ctx context.Context, root *scan.Root) (*watch.Index, error) {
	path := filepath.Join(s.cfg.StateDir, baselineName)
	b, idx, err := loadIndexFile(path, baseline.ReadOptions{MaxEntries: s.maxEntries()})
	switch {
	case err == nil:
		if err := s.setBaseline(b, idx, metrics.BaselineFirstSight); err != nil {
			return nil, fmt.Errorf("stored baseline unusable (remove it to re-baseline on purpose): %w", err)
		}
		return idx, nil
	case !errors.Is(err, os.ErrNotExist):
		// Corrupt or unreadable: refuse to guess; an operator must look.
		return nil, fmt.Errorf("stored baseline unusable (remove it to re-baseline on purpose): %w", err)
	}
	if err := os.MkdirAll(s.cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create state directory: %w", err)
	}
	l := s.given.Limits()
	opts := scan.Options{Matcher: s.given, MaxFiles: l.MaxFiles, MaxDepth: l.MaxDepth, MaxFileBytes: l.MaxFileBytes, Shared: s.cfg.SharedHashes}
	b, idx, err = takeBaseline(ctx, root, opts, baseline.Header{PolicyDigest: s.cfg.Policy.Digest()}, path)
	if err != nil {
		return nil, err
	}
	if err := s.setBaseline(b, idx, metrics.BaselineFirstSight); err != nil {
		return nil, err
	}
	s.recordImage()
	s.event(eventNormal, kube.ReasonBaselineCreated, fmt.Sprintf("first-sight baseline of the app container taken: %d entries, digest %x", idx.Len(), b.Digest[:8]))
	return idx, nil
}

// Kill sends SIGKILL to every process of the current target (respond.Target).
func (s *sidecar) Kill() error {
	s.mu.Lock()
	c := s.target
	s.mu.Unlock()
	if c == nil {
		return errors.New("no target container")
	}
	return s.finder.Kill(c)
}

// Root returns the restore writer of the current target (respond.Target).
func (s *sidecar) Root() respond.RootWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writer == nil {
		return nil
	}
	return s.writer
}

// sink passes the findings of the monitor of one container to the
// responder, which keeps the ledger of open violations, and its scans to
// the metrics.
type sink struct {
	s          *sidecar
	mon        *watch.Monitor
	incomplete incompleteChecks
	root       *scan.Root // the container's root, for the evidence
	// attrib is when the last whole-tree check ended and the bound on
	// attributions per second (evidence.go).
	attrib *attribState
}

func (k *sink) Finding(ctx context.Context, f compare.Finding, detected time.Time) {
	content := k.s.original(f)
	ctx = respond.WithEventTime(ctx, detected)
	// Evidence first: the response may destroy the file.
	if rec := k.capture(f, content); rec != nil {
		ctx = respond.WithEvidence(ctx, rec)
	}
	if err := k.s.resp.Handle(ctx, f, content); err != nil {
		k.s.log.Error("response failed", "path", f.Path, keyError, err.Error())
	}
	if content != nil && k.mon != nil {
		k.reverify(ctx, f.Path)
	}
}

// reverify re-verifies a path restore was tried on, and its directories.
func (k *sink) reverify(ctx context.Context, p string) {
	// A restored file keeps a new inode and ctime, its directory a new
	// ctime; nothing else may differ.
	if _, err := k.mon.Restored(ctx, p, attr.Inode|attr.Ctime|attr.Nlink); err != nil {
		k.s.log.Error("re-verification after restore failed", "path", p, keyError, err.Error())
	}
	// The rename changed the directory's ctime; on overlayfs the first
	// write under a directory of the image copies it (and every ancestor)
	// up, which changes their ctimes and may change their link counts.
	// Nothing else of theirs may differ.
	for dir := path.Dir(p); ; dir = path.Dir(dir) {
		if _, err := k.mon.Restored(ctx, dir, attr.Ctime|attr.Nlink|attr.Inode); err != nil {
			k.s.log.Error("re-verification after restore failed", "path", dir, keyError, err.Error())
		}
		if dir == "/" {
			break
		}
	}
}

func (k *sink) Resolved(path string) { k.s.resp.Resolved(path) }

func (k *sink) Open() []string { return k.s.resp.Open() }

func (k *sink) Scanned(kind metrics.ScanType, err error, took time.Duration, entries int) {
	k.attrib.checked(kind, err)
	if n := k.incomplete.get(kind); err == nil && kind != metrics.ScanEvent && n > 0 {
		// Counted as incomplete, and not as the evidence of a full check;
		// it still verified what it compared (below).
		k.s.metrics.ScanDone(kind, time.Now(), took, fmt.Errorf("%d paths not compared: %w", n, metrics.ErrIncomplete))
	} else {
		k.s.metrics.ScanDone(kind, time.Now(), took, err)
	}
	if err == nil && kind != metrics.ScanEvent {
		k.s.metrics.SetFilesMonitored(entries)
		// A whole-tree scan leaves garbage the size of the tree, and an
		// idle sidecar triggers no collection: give it back now.
		debug.FreeOSMemory()
	}
	if kind == metrics.ScanFull && err == nil {
		// The monitor resolved, before this, every open violation this
		// check did not find again (those of an earlier container too).
		k.s.resp.Verified()
		k.s.verifiedOnce.Do(func() {
			k.s.log.Info("first full check completed", keyEntries, entries, keyTook, took.String())
			close(k.s.verified)
			k.s.releaseStartup()
		})
	}
}

// releaseStartup drops the binary's pages that start-up touched and the
// sidecar no longer needs (package footprint): about 10 MiB of its
// resident set, most of it the initialisation of client-go and the API
// types, whether or not the sidecar uses the API.
func (s *sidecar) releaseStartup() {
	n, err := footprint.Release()
	if err != nil {
		s.log.Warn("could not release the binary's start-up pages", keyError, err)
		return
	}
	s.log.Debug("released the binary's start-up pages", keyReleased, n)
}

func (k *sink) Rescan(reason metrics.RescanReason) { k.s.metrics.Rescan(reason) }

func (k *sink) Omitted(n int, check bool) { k.s.resp.Omitted(n, check) }

// original returns the kept original bytes of the file a finding is about
// (nil when restore is off, the file was added, or it was not kept).
func (s *sidecar) original(f compare.Finding) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects == nil || f.Kind == compare.Added {
		return nil
	}
	return s.objects.get(f.Old)
}
