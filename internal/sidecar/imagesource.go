package sidecar

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/referrer"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/safetext"
	"github.com/podfim/podfim/internal/target"
	"github.com/podfim/podfim/internal/watch"
)

// The image-bound sources (registry, configmap) use a baseline only when it
// is signed by Config.VerifyKey AND records the digest of the image the app
// container runs. Anything else is refused loudly (log, Event, metric) and
// the container is not verified, so /readyz fails: fail closed. The sidecar
// retries with a backoff, so a baseline pushed after the rollout is picked
// up. A new image is a new baseline from that image's digest, never a
// re-baseline of what runs.
const (
	pulledName        = "image.pfb"      // the registry source's pulled baseline, in StateDir
	maxConfigMapFiles = 64               // baselines considered in a ConfigMap directory
	refuseRetryMin    = 5 * time.Second  // first retry after a refusal
	refuseRetryMax    = 5 * time.Minute  // retries back off to this
	maxRefusalEvent   = 900              // bytes of the reason an Event carries
	maxRefusalReady   = 512              // bytes of the refusal /readyz names, before escaping
	keyReason         = "reason"         // log key of a refusal reason
	keyImageRef       = "image_ref"      // log key of the image a baseline was looked up for
	keyRefusedSources = "baseline_files" // log key of a ConfigMap's candidates
)

// ErrNoImage: the digest of the image the app container runs is unknown,
// so no baseline can be bound to it.
var ErrNoImage = errors.New("cannot tell which image the app container runs")

// runningImage is the image the app container runs: its digest, and the
// repository it was pulled from when known ("" otherwise).
type runningImage struct {
	repo   string // "registry/repo", for the registry source
	digest string // "sha256:..."
}

func (im runningImage) String() string {
	if im.repo == "" {
		return im.digest
	}
	return im.repo + "@" + im.digest
}

// parseImageRef splits "repo@sha256:..." or "sha256:..." (a kubelet
// imageID, --image-digest) into a runningImage.
func parseImageRef(s string) (runningImage, error) {
	repo, digest, ok := strings.Cut(s, "@")
	if !ok {
		repo, digest = "", s
	}
	alg, hex, _ := strings.Cut(digest, ":")
	if alg != "sha256" || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return runningImage{}, fmt.Errorf("%q is not REPO@sha256:<64 hex> or sha256:<64 hex>", s)
	}
	return runningImage{repo: repo, digest: digest}, nil
}

// imageOf tells the image c runs: what the kubelet reports in the pod's
// status when the sidecar can ask the API (the truth of what runs), else
// Config.ImageDigest (the webhook's annotation, from a pod spec that names
// the image by digest). A repository the kubelet does not report is taken
// from ImageDigest when that names the same digest.
func (s *sidecar) imageOf(ctx context.Context, c *target.Container) (runningImage, error) {
	var given runningImage
	if s.cfg.ImageDigest != "" {
		var err error
		if given, err = parseImageRef(s.cfg.ImageDigest); err != nil {
			return runningImage{}, fmt.Errorf("%w: --image-digest: %w", ErrNoImage, err)
		}
	}
	if s.cfg.Images == nil || c.ContainerID == "" {
		if given.digest == "" {
			return runningImage{}, fmt.Errorf("%w: no API access to read the pod's status, and no --image-digest", ErrNoImage)
		}
		return given, nil
	}
	id, err := s.lookupImage(ctx, c.ContainerID)
	if err != nil {
		if given.digest != "" {
			s.log.Warn("cannot read the app container's image from the pod's status; using --image-digest", keyError, err.Error(), keyImageRef, given.String())
			return given, nil
		}
		return runningImage{}, fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	im, err := parseImageRef(id)
	if err != nil {
		return runningImage{}, fmt.Errorf("%w: the kubelet reports imageID %w", ErrNoImage, err)
	}
	if im.repo == "" && given.digest == im.digest {
		im.repo = given.repo
	}
	return im, nil
}

// imageBaseline returns the verified baseline for the image c runs. Until
// there is one, it refuses, waits and tries again; it returns early only
// when ctx ends.
func (s *sidecar) imageBaseline(ctx context.Context, c *target.Container) (*baseline.Baseline, error) {
	wait := refuseRetryMin
	for {
		b, err := s.loadImageBaseline(ctx, c)
		if err == nil {
			return b, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.refuse(err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, refuseRetryMax)
	}
}

// loadImageBaseline finds, verifies and installs the baseline for the
// image c runs; the one in use is kept when it is for that image.
func (s *sidecar) loadImageBaseline(ctx context.Context, c *target.Container) (*baseline.Baseline, error) {
	im, err := s.imageOf(ctx, c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	b, imageID := s.base, im.String()
	s.imageID = imageID
	s.mu.Unlock()
	if b != nil && b.Image.Matches(im.digest) {
		return b, nil
	}
	opts := baseline.ReadOptions{
		VerifyKey:  s.cfg.VerifyKey,
		MaxEntries: min(s.cfg.Policy.Limits.MaxFiles, baseline.MaxEntries),
		// The app runs on this node: an index digest names the image of
		// every platform, and only this one's baseline fits.
		Binding: baseline.Binding{ImageDigest: im.digest, Subject: s.cfg.Subject, Platform: runtime.GOOS + "/" + runtime.GOARCH},
	}
	src := s.cfg.Source()
	var idx *watch.Index
	switch src {
	case metrics.BaselineRegistry:
		b, idx, err = s.pullBaseline(ctx, im, opts)
	case metrics.BaselineConfigMap:
		b, idx, err = s.pickBaseline(opts)
	default:
		return nil, fmt.Errorf("baseline source %q is not bound to an image", src)
	}
	if err != nil {
		return nil, err
	}
	if err := s.setBaseline(b, idx, src); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.refusal = ""
	s.mu.Unlock()
	s.changed()
	s.log.Info("baseline verified for the running image", keySource, src, keyImageRef, imageID,
		keyImage, b.Image.Manifest, "key_id", b.KeyID, "serial", b.Serial)
	return b, nil
}

// pullBaseline fetches the image's baseline referrer from the image's own
// registry into the state directory, then reads it into an index
// (verified again; its entries are never held decoded).
func (s *sidecar) pullBaseline(ctx context.Context, im runningImage, opts baseline.ReadOptions) (*baseline.Baseline, *watch.Index, error) {
	if im.repo == "" {
		return nil, nil, fmt.Errorf("%w: the kubelet reports %s without its repository; set --image-digest to REPO@%s", ErrNoImage, im.digest, im.digest)
	}
	ref, err := referrer.ParseDigest(im.String(), s.cfg.Pull.Insecure)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	if err := os.MkdirAll(s.cfg.StateDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("failed to create state directory: %w", err)
	}
	path := filepath.Join(s.cfg.StateDir, pulledName)
	if _, err := referrer.Pull(ctx, ref, path, opts, s.cfg.Pull); err != nil {
		return nil, nil, err
	}
	return loadIndexFile(path, opts)
}

// pickBaseline chooses, of the baselines in the ConfigMap directory, the
// newest (signed serial, then creation time, then name) that verifies
// under opts: signed by the key, for the running image. It reads the one
// chosen into an index, as pullBaseline does.
func (s *sidecar) pickBaseline(opts baseline.ReadOptions) (*baseline.Baseline, *watch.Index, error) {
	dir := s.cfg.BaselineFile
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read the baseline ConfigMap %q: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		// A mounted ConfigMap holds ..data and ..<timestamp>: the keys
		// are the names without a leading dot.
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	skipped := max(0, len(names)-maxConfigMapFiles)
	names = names[:len(names)-skipped]
	var best *baseline.Reader
	var bestName string
	var refused []error
	for _, n := range names {
		r, err := baseline.OpenFile(filepath.Join(dir, n), opts)
		if err != nil {
			refused = append(refused, err)
			continue
		}
		r.Close()
		if best == nil || r.Serial > best.Serial || (r.Serial == best.Serial && r.Created.After(best.Created)) {
			best, bestName = r, n
		}
	}
	if skipped > 0 {
		s.log.Warn("the baseline ConfigMap holds more files than are considered", keyRefusedSources, len(names)+skipped, "considered", maxConfigMapFiles)
	}
	if best == nil {
		return nil, nil, &noneUsable{what: fmt.Sprintf("none of the %d baselines in %s is usable", len(names), dir), refused: refused}
	}
	return loadIndexFile(filepath.Join(dir, bestName), opts)
}

// noneUsable is the error of a ConfigMap without a usable baseline: it
// wraps each refusal, so that the reason is found with errors.Is.
type noneUsable struct {
	what    string
	refused []error
}

func (e *noneUsable) Error() string {
	var b strings.Builder
	b.WriteString(e.what)
	for _, err := range e.refused {
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *noneUsable) Unwrap() []error { return append([]error{referrer.ErrNotFound}, e.refused...) }

// refuse reports that no baseline can be used now: a log line, a Warning
// Event and the metric. The container stays unverified, so /readyz fails.
func (s *sidecar) refuse(err error, retry time.Duration) {
	src, reason := s.cfg.Source(), refusalReason(err)
	s.metrics.BaselineRefused(src, reason)
	s.mu.Lock()
	imageID := s.imageID
	s.mu.Unlock()
	s.log.Error("baseline refused: the app container is not verified and the pod stays unready",
		keySource, src, keyReason, reason, keyImageRef, imageID, keyError, err.Error(), keyRetry, retry.String())
	msg := fmt.Sprintf("no baseline signed by key %s for image %s (%s): %v", baseline.KeyID(s.cfg.VerifyKey), imageID, reason, err)
	s.event(eventWarning, kube.ReasonBaselineRefused, safetext.Cut(msg, maxRefusalEvent))
	s.mu.Lock()
	s.refusal = refusalLine(src, reason, imageID, baseline.KeyID(s.cfg.VerifyKey))
	s.mu.Unlock()
	s.changed()
	s.refusedOnce.Do(func() {
		if s.refused != nil { // nil in tests that build a bare sidecar
			close(s.refused)
		}
	})
}

// refusalLine is what /readyz says of a refusal: the source, the reason
// and what it means, the image and the key, at most maxRefusalReady bytes
// before /readyz escapes it. It leaves out the error itself (in the log and
// the Event): the app can read /readyz, and a registry's error text is
// neither ours to repeat nor bounded in what it says.
func refusalLine(src metrics.BaselineSource, reason metrics.RefusalReason, imageID, keyID string) string {
	if imageID == "" {
		imageID = "unknown"
	}
	return safetext.Cut(fmt.Sprintf("baseline refused (source %s, reason %s: %s) for image %s, key %s",
		src, reason, refusalMeaning(reason), imageID, keyID), maxRefusalReady)
}

// refusalMeaning says what a refusal reason means, for /readyz.
func refusalMeaning(r metrics.RefusalReason) string {
	switch r {
	case metrics.RefusedNoImage:
		return "the running image's digest is unknown"
	case metrics.RefusedNotFound:
		return "no baseline for the running image's digest"
	case metrics.RefusedSignature:
		return "unsigned, or signed by another key"
	case metrics.RefusedImage:
		return "signed, but made for another image or subject"
	case metrics.RefusedInvalid:
		return "corrupt, a newer format or over a limit"
	case metrics.RefusedPolicy:
		return "made with another policy than the sidecar was given"
	}
	return "the registry or the file system failed"
}

// readiness is what /readyz serves: the responder's ledger, and why no
// baseline can be used when one was refused (server.Blocked).
type readiness struct {
	*respond.Responder
	s *sidecar
}

func (r readiness) Blocked() string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.s.refusal
}

// refusalReason classifies a refusal for the metric. A Pull or ConfigMap
// that found nothing usable wraps every candidate's reason, and the one
// that got furthest through the checks wins: a baseline of ours made with
// another policy, then one of ours for another image, then one signed by
// another key, then a malformed one. Someone else's baseline beside ours
// (a leftover in a shared registry, an attacker's referrer) must not hide
// that ours is for another image; for a single candidate the order does
// not matter.
func refusalReason(err error) metrics.RefusalReason {
	switch {
	case errors.Is(err, ErrNoImage):
		return metrics.RefusedNoImage
	case errors.Is(err, ErrPolicy):
		return metrics.RefusedPolicy
	case errors.Is(err, baseline.ErrBinding):
		return metrics.RefusedImage
	case errors.Is(err, baseline.ErrSignature):
		return metrics.RefusedSignature
	case errors.Is(err, baseline.ErrFormat), errors.Is(err, baseline.ErrDigest), errors.Is(err, baseline.ErrVersion),
		errors.Is(err, referrer.ErrArtifact), errors.Is(err, referrer.ErrTooLarge):
		return metrics.RefusedInvalid
	case errors.Is(err, referrer.ErrNotFound):
		return metrics.RefusedNotFound
	}
	return metrics.RefusedError
}
