package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/safetext"
)

// Event reasons podfim posts on its pod (docs/kubernetes.md). They are API:
// alerts and `kubectl get events --field-selector reason=...` rely on them.
const (
	ReasonFileChanged       = "FileChanged"       // a watched file differs from the baseline
	ReasonFileAdded         = "FileAdded"         // a file that is not in the baseline appeared
	ReasonFileRemoved       = "FileRemoved"       // a file of the baseline is gone
	ReasonFileRestored      = "FileRestored"      // restore wrote the baseline's content back
	ReasonContainerKilled   = "ContainerKilled"   // kill: the app container's processes were killed
	ReasonKillLimitReached  = "KillLimitReached"  // kills did not help; escalating
	ReasonPodQuarantined    = "PodQuarantined"    // the pod was labelled quarantined
	ReasonPodReleased       = "PodReleased"       // the quarantine label was removed: no violation is open
	ReasonPodDeleted        = "PodDeleted"        // the pod is being deleted so that its controller replaces it
	ReasonDeleteRefused     = "DeleteRefused"     // the delete guard refused (no controller, too young), or the deletion failed
	ReasonViolationResolved = "ViolationResolved" // a path is clean again (restored, or a fresh container)
	ReasonBaselineCreated   = "BaselineCreated"   // a first-sight baseline was taken
	ReasonImageChanged      = "ImageChanged"      // the app container runs another image than the baseline's
	ReasonBaselineRefused   = "BaselineRefused"   // no baseline could be used for the running image: unready until one is
	ReasonCheckIncomplete   = "CheckIncomplete"   // a whole-tree check could not compare some paths (unreadable, not hashed)
	ReasonExecutionDrift    = "ExecutionDrift"    // a process of the app runs what the baseline does not hold
	ReasonProcessKilled     = "ProcessKilled"     // kill: the drifted process was killed
)

// Quarantine marks on the pod. The label lets a NetworkPolicy isolate the
// pod and an operator list the quarantined pods; the annotation says why and
// since when.
const (
	LabelQuarantined     = "podfim.io/quarantined"
	AnnotationQuarantine = "podfim.io/quarantine"
	quarantineLabelValue = "true"
	quarantineAnnotLimit = 20 // paths named in the annotation
)

// Who the Events say they come from.
const (
	eventComponent  = "podfim"
	eventController = "podfim.io/sidecar"
)

// Limits and pacing of the Reporter (docs/kubernetes.md).
const (
	maxEventMessageBytes = 1024
	defaultReporterQueue = 128
	defaultReporterTries = 5
	defaultReporterWait  = 500 * time.Millisecond
	maxReporterBackoff   = 30 * time.Second
	// reporterResync retries a quarantine that did not reach the pod.
	reporterResync = 30 * time.Second
	// annotationEvery bounds how often the annotation of a quarantined pod
	// is rewritten as violations are added: a storm of findings must not be
	// a storm of patches. The label itself is never delayed.
	annotationEvery = 10 * time.Second
)

// Log keys and messages of the reporter.
const (
	keyOperation = "operation"
	keyError     = "error"
	keyAttempts  = "attempts"
)

// API is what the Reporter needs of the API server; *Client implements it.
type API interface {
	GetPod(ctx context.Context) (*corev1.Pod, error)
	PatchPod(ctx context.Context, patch []byte) error
	DeletePod(ctx context.Context, uid string) error
	CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error)
	PatchEvent(ctx context.Context, ev *corev1.Event, patch []byte) (*corev1.Event, error)
}

// ReporterConfig configures a Reporter. Zero fields take the defaults.
type ReporterConfig struct {
	Pod Pod
	// Events turns Events on; without it Event does nothing (quarantine and
	// delete still work).
	Events bool
	// QueueSize bounds the Events waiting to be written; beyond it the
	// oldest is dropped and counted (podfim_kube_events_total{result="dropped"}).
	QueueSize int
	// Attempts bounds the tries of one write; Backoff is the wait before the
	// second, doubled after each failure up to 30 s.
	Attempts int
	Backoff  time.Duration
	// Clock is the correlator's and the delete guard's clock (tests).
	Clock clock.Clock
}

// queued is one Event the correlator let through: created, or patched when
// it repeats one already written.
type queued struct {
	ev    *corev1.Event
	patch []byte
}

// Reporter writes to the API server in the background what the responder
// decides: Events on the pod, the quarantine label and the deletion of the
// pod. Nothing it does blocks its caller: Events go through client-go's
// EventCorrelator (the spam filter and aggregation kube components use: a
// burst of 25 per reason, then one per 5 minutes, and similar events merged
// into one with a count) into a bounded queue that drops the oldest; the
// quarantine is a level the worker converges the pod to. Writes are retried
// with exponential backoff; RBAC refusals are logged once, never fatal.
type Reporter struct {
	api        API
	cfg        ReporterConfig
	log        *slog.Logger
	m          *metrics.Sidecar
	correlator *record.EventCorrelator
	wake       chan struct{}
	done       chan struct{}

	mu             sync.Mutex
	queue          []queued
	qAsked         bool   // SetQuarantine was called: the pod's label is ours to keep
	quarantine     bool   // desired
	qReason        string // desired annotation
	qApplied       *bool  // what the pod was last patched to; nil: unknown
	qAppliedReason string
	qLastPatch     time.Time
	deleteAsked    bool
	deleteDone     bool
	deleteNoted    bool  // deleteFailed was called for the current request
	deleteErr      error // the last refusal of a deletion (permanent)
	deleteErrAt    time.Time
	deleteFailed   func(error) // see OnDeleteFailed
	pod            *corev1.Pod // last read, for the delete guard
	lastErr        map[string]string
	closing        bool

	// qGen counts SetQuarantine calls; qSynced is the qGen the worker
	// last finished deciding on (patched, failed or had nothing to do).
	// Tests wait on them instead of sleeping to see that nothing happens.
	qGen, qSynced uint64
}

// NewReporter returns a reporter for cfg.Pod through api. Run starts it.
// log nil discards; m may be nil.
func NewReporter(api API, cfg ReporterConfig, log *slog.Logger, m *metrics.Sidecar) *Reporter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = defaultReporterQueue
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = defaultReporterTries
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = defaultReporterWait
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Reporter{
		api: api, cfg: cfg, log: log, m: m,
		correlator: record.NewEventCorrelatorWithOptions(record.CorrelatorOptions{
			Clock: cfg.Clock,
			// The default spam key is the object and the event type: a
			// storm of FileChanged would use up the budget of the
			// PodQuarantined that follows it. One budget per reason.
			SpamKeyFunc: func(ev *corev1.Event) string {
				return strings.Join([]string{ev.Source.Component, ev.InvolvedObject.Namespace, ev.InvolvedObject.Name,
					string(ev.InvolvedObject.UID), ev.Type, ev.Reason}, "\x00")
			},
		}),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		lastErr: map[string]string{},
	}
}

// Event posts an Event of type corev1.EventTypeNormal or Warning with
// reason on the pod, in the background. message is cut to 1 KiB and made
// printable: it may hold file names an attacker chose.
func (r *Reporter) Event(eventType, reason, message string) {
	if !r.cfg.Events {
		return
	}
	now := r.cfg.Clock.Now()
	t := metav1.NewTime(now)
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// client-go's naming: unique per pod and nanosecond.
			Name:      fmt.Sprintf("%v.%x", r.cfg.Pod.Name, now.UnixNano()),
			Namespace: r.cfg.Pod.Namespace,
		},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: r.cfg.Pod.Namespace, Name: r.cfg.Pod.Name, UID: types.UID(r.cfg.Pod.UID),
		},
		Reason:              reason,
		Message:             eventMessage(message),
		FirstTimestamp:      t,
		LastTimestamp:       t,
		Count:               1,
		Type:                eventType,
		Source:              corev1.EventSource{Component: eventComponent},
		ReportingController: eventController,
		ReportingInstance:   r.cfg.Pod.Name,
	}
	res, err := r.correlator.EventCorrelate(ev)
	if err != nil || res == nil {
		// The correlator's patch could not be computed: create it instead.
		res = &record.EventCorrelateResult{Event: ev}
	}
	if res.Skip {
		r.m.KubeEvent(metrics.KubeEventFiltered)
		return
	}
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		r.m.KubeEvent(metrics.KubeEventDropped)
		return
	}
	dropped := 0
	for len(r.queue) >= r.cfg.QueueSize {
		r.queue = r.queue[1:]
		dropped++
	}
	r.queue = append(r.queue, queued{ev: res.Event, patch: res.Patch})
	r.mu.Unlock()
	for range dropped {
		r.m.KubeEvent(metrics.KubeEventDropped)
	}
	r.poke()
}

// SetQuarantine asks for the pod to be labelled quarantined (on) with
// reason in its annotation, or for the label and annotation to be removed.
// The worker converges the pod to the last request.
func (r *Reporter) SetQuarantine(on bool, reason string) {
	r.mu.Lock()
	r.qAsked, r.quarantine, r.qReason = true, on, reason
	r.qGen++
	r.mu.Unlock()
	r.m.SetQuarantined(on)
	r.poke()
}

// Errors of the delete guard.
var (
	ErrDeleteNoController = errors.New("the pod has no controller that would replace it")
	ErrDeleteTooYoung     = errors.New("the pod is younger than the delete guard's minimum age")
	ErrDeleteUnknown      = errors.New("the pod has not been read from the API server yet")
	ErrDeleteAgain        = errors.New("the pod's deletion was already requested")
	ErrDeleteRefused      = errors.New("the API server refused the pod's deletion a moment ago")
)

// Delete asks for the pod to be deleted so that its controller (a
// ReplicaSet, StatefulSet...) starts a fresh one, in the background. It
// refuses, without a request, when the pod has no controller, is younger
// than minAge (the guard against delete loops: a replacement that is
// tampered at once would otherwise be deleted at once, forever), was
// already asked to go, or when the API server refused the last request
// (RBAC) less than 30 s ago: a storm of findings is not a storm of refused
// requests. The guard reads the pod the worker last read.
func (r *Reporter) Delete(minAge time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deleteAsked {
		return ErrDeleteAgain
	}
	if r.deleteErr != nil && r.cfg.Clock.Since(r.deleteErrAt) < reporterResync {
		return fmt.Errorf("%w: %w", ErrDeleteRefused, r.deleteErr)
	}
	if r.pod == nil {
		return ErrDeleteUnknown
	}
	if metav1.GetControllerOf(r.pod) == nil {
		return fmt.Errorf("%w (a bare pod would be gone for good)", ErrDeleteNoController)
	}
	if age := r.cfg.Clock.Since(r.pod.CreationTimestamp.Time); age < minAge {
		return fmt.Errorf("%w: %s < %s", ErrDeleteTooYoung, age.Round(time.Second), minAge)
	}
	r.deleteAsked = true
	r.poke()
	return nil
}

// OnDeleteFailed sets f to be called, from the worker, when a deletion that
// Delete accepted fails: once per request, after the request's retries.
// The pod is not going away, so the caller escalates. A refusal that a
// retry cannot change (RBAC, an invalid request) ends the request, and
// Delete asks again 30 s later; other errors are retried in the
// background. A pod already gone, or replaced under its name, is not a
// failure.
func (r *Reporter) OnDeleteFailed(f func(error)) {
	r.mu.Lock()
	r.deleteFailed = f
	r.mu.Unlock()
}

func (r *Reporter) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run writes until ctx ends or Close was called and the queue is empty.
func (r *Reporter) Run(ctx context.Context) {
	defer close(r.done)
	resync := time.NewTicker(reporterResync)
	defer resync.Stop()
	for {
		r.refreshPod(ctx)
		r.syncDelete(ctx)
		r.syncQuarantine(ctx)
		for r.sendOne(ctx) {
			// Quarantine and delete are more urgent than a backlog of Events.
			r.syncDelete(ctx)
			r.syncQuarantine(ctx)
		}
		r.mu.Lock()
		closing := r.closing && len(r.queue) == 0
		r.mu.Unlock()
		if closing {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-resync.C:
		}
	}
}

// Close lets the worker write what is queued until ctx ends, then returns;
// Events after Close are dropped. The worker must have been started.
func (r *Reporter) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.poke()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.mu.Lock()
		n := len(r.queue)
		r.queue = nil
		r.mu.Unlock()
		for range n {
			r.m.KubeEvent(metrics.KubeEventDropped)
		}
		return ctx.Err()
	}
}

// refreshPod reads the pod once, for the delete guard; the metadata it
// needs (owner, creation time, UID) never changes.
func (r *Reporter) refreshPod(ctx context.Context) {
	r.mu.Lock()
	known := r.pod != nil
	r.mu.Unlock()
	if known {
		return
	}
	var pod *corev1.Pod
	err := r.try(ctx, metrics.KubeGetPod, 1, func(ctx context.Context) (err error) {
		pod, err = r.api.GetPod(ctx)
		return err
	})
	if err == nil {
		r.mu.Lock()
		r.pod = pod
		r.mu.Unlock()
	}
}

func (r *Reporter) syncDelete(ctx context.Context) {
	r.mu.Lock()
	do := r.deleteAsked && !r.deleteDone && r.pod != nil
	var uid string
	if do {
		uid = string(r.pod.UID)
	}
	r.mu.Unlock()
	if !do {
		return
	}
	err := r.try(ctx, metrics.KubeDeletePod, r.cfg.Attempts, func(ctx context.Context) error {
		return r.api.DeletePod(ctx, uid)
	})
	if err == nil || apierrors.IsNotFound(err) || errors.Is(err, ErrPodNotFound) || apierrors.IsConflict(err) {
		// Gone, or replaced: nothing left to delete.
		r.mu.Lock()
		r.deleteDone = true
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	notify := !r.deleteNoted
	r.deleteNoted = true
	if permanent(err) {
		// Not retried (every wake-up would send the same refused
		// request); a later finding's Delete asks again, after a pause.
		r.deleteAsked, r.deleteNoted = false, false
		r.deleteErr, r.deleteErrAt = err, r.cfg.Clock.Now()
	}
	f := r.deleteFailed
	r.mu.Unlock()
	if notify && f != nil {
		f(err)
	}
}

func (r *Reporter) syncQuarantine(ctx context.Context) {
	r.mu.Lock()
	want, reason, gen := r.quarantine, r.qReason, r.qGen
	defer func() {
		r.mu.Lock()
		r.qSynced = max(r.qSynced, gen)
		r.mu.Unlock()
	}()
	in := !r.qAsked || (r.qApplied != nil && *r.qApplied == want && r.qAppliedReason == reason)
	if !in && want && r.qApplied != nil && *r.qApplied && r.cfg.Clock.Since(r.qLastPatch) < annotationEvery {
		// Labelled already: only the annotation would change. Later (the
		// resync, or a wake-up after annotationEvery).
		in = true
	}
	var uid string
	if r.pod != nil {
		uid = string(r.pod.UID)
	} else {
		uid = r.cfg.Pod.UID
	}
	r.mu.Unlock()
	if in {
		return
	}
	patch, err := quarantinePatch(want, reason, uid)
	if err != nil {
		r.log.Error("failed to build the quarantine patch", keyError, err.Error())
		return
	}
	if err := r.try(ctx, metrics.KubePatchPod, r.cfg.Attempts, func(ctx context.Context) error {
		return r.api.PatchPod(ctx, patch)
	}); err != nil {
		return // retried at the next wake-up or resync
	}
	r.mu.Lock()
	// Applied what was wanted when the patch was built; a change since
	// leaves qApplied != quarantine and is synced next.
	applied := want
	r.qApplied, r.qAppliedReason, r.qLastPatch = &applied, reason, r.cfg.Clock.Now()
	r.mu.Unlock()
}

// quarantinePatch is the JSON merge patch that sets (or removes: null) the
// label and the annotation. The UID, when known, makes the API server
// refuse the patch on a replacement pod of the same name.
func quarantinePatch(on bool, reason, uid string) ([]byte, error) {
	meta := map[string]any{}
	if on {
		meta["labels"] = map[string]any{LabelQuarantined: quarantineLabelValue}
		meta["annotations"] = map[string]any{AnnotationQuarantine: reason}
	} else {
		meta["labels"] = map[string]any{LabelQuarantined: nil}
		meta["annotations"] = map[string]any{AnnotationQuarantine: nil}
	}
	if uid != "" {
		meta["uid"] = uid
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

// QuarantineReason is the annotation's value: JSON with the time, the
// number of open violations and the first paths, so that `kubectl get pod
// -o yaml` tells an operator what happened without the logs.
func QuarantineReason(since time.Time, paths []string) string {
	n := len(paths)
	if len(paths) > quarantineAnnotLimit {
		paths = paths[:quarantineAnnotLimit]
	}
	b, _ := json.Marshal(struct {
		Since      time.Time `json:"since"`
		Reason     string    `json:"reason"`
		Violations int       `json:"violations"`
		Paths      []string  `json:"paths"`
	}{since.UTC(), "integrity violation", n, paths})
	return string(b)
}

// sendOne writes the oldest queued Event; it reports whether there was one.
func (r *Reporter) sendOne(ctx context.Context) bool {
	r.mu.Lock()
	if len(r.queue) == 0 {
		r.mu.Unlock()
		return false
	}
	q := r.queue[0]
	r.queue = r.queue[1:]
	r.mu.Unlock()

	var out *corev1.Event
	err := r.try(ctx, metrics.KubeWriteEvent, r.cfg.Attempts, func(ctx context.Context) (err error) {
		if q.patch != nil {
			out, err = r.api.PatchEvent(ctx, q.ev, q.patch)
			// The Event it repeats was dropped or expired: create it.
			if !apierrors.IsNotFound(err) {
				return err
			}
		}
		ev := q.ev.DeepCopy()
		ev.ResourceVersion = ""
		out, err = r.api.CreateEvent(ctx, ev)
		if apierrors.IsAlreadyExists(err) {
			out, err = ev, nil
		}
		return err
	})
	if err != nil {
		r.m.KubeEvent(metrics.KubeEventFailed)
		return true
	}
	r.correlator.UpdateState(out)
	r.m.KubeEvent(metrics.KubeEventSent)
	return true
}

// try runs op up to attempts times with exponential backoff (the Client
// counts each request). Refusals that a retry cannot change (403, 401, 409, 422, a
// replaced pod) are not retried. Each distinct error of an operation is
// logged once, and its recovery once.
func (r *Reporter) try(ctx context.Context, op metrics.KubeOperation, attempts int, f func(context.Context) error) error {
	wait := r.cfg.Backoff
	var err error
	for i := 1; ; i++ {
		rctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
		err = f(rctx)
		cancel()
		if err == nil {
			r.noteError(op, nil, i)
			return nil
		}
		if ctx.Err() != nil || i >= attempts || permanent(err) {
			attempts = i
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			r.noteError(op, err, i)
			return err
		case <-t.C:
		}
		wait = min(2*wait, maxReporterBackoff)
	}
	r.noteError(op, err, attempts)
	return err
}

func (r *Reporter) noteError(op metrics.KubeOperation, err error, attempts int) {
	r.mu.Lock()
	last := r.lastErr[string(op)]
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	r.lastErr[string(op)] = msg
	r.mu.Unlock()
	switch {
	case err != nil && msg != last:
		r.log.Error("Kubernetes API request failed; detection and the other responses go on", keyOperation, string(op), keyAttempts, attempts, keyError, msg)
	case err == nil && last != "":
		r.log.Info("Kubernetes API request works again", keyOperation, string(op))
	}
}

func permanent(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrPodNotFound) ||
		apierrors.IsConflict(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

// eventMessage makes a message safe for `kubectl describe`: printable
// UTF-8 (a path with control characters is Go-quoted) and at most 1 KiB.
func eventMessage(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		c, n := utf8.DecodeRuneInString(s)
		switch {
		case c == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `'\x%02x'`, s[0])
		case !strconv.IsPrint(c) && c != ' ':
			b.WriteString(strconv.QuoteRune(c))
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return safetext.Cut(b.String(), maxEventMessageBytes)
}
