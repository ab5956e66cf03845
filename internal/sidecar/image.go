package sidecar

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/target"
)

// Files of the state directory next to the first-sight baseline. The image
// ID is kept apart from the baseline file, whose format is package
// baseline's.
const (
	baselineName     = "baseline.pfb"
	imageIDName      = "baseline.image"    // the image ID the baseline was taken from
	prevBaselineName = "baseline.pfb.prev" // the baseline of the image before, kept for an operator
	imageLookupWait  = 5 * time.Second     // how long a started container waits for the kubelet to report it
	imageLookupPoll  = 250 * time.Millisecond
	maxImageIDBytes  = 4096
)

// Event types (corev1.EventTypeNormal and Warning).
const (
	eventNormal  = "Normal"
	eventWarning = "Warning"
)

// Log keys of the image check.
const (
	keyImageID  = "image_id"
	keyPrevious = "previous_image_id"
)

// event posts a Kubernetes Event when the plan has the event action and the
// API is configured.
func (s *sidecar) event(eventType, reason, message string) {
	if s.cfg.Kube == nil || !s.cfg.Plan.Uses(respond.ActionEvent) {
		return
	}
	s.cfg.Kube.Event(eventType, reason, message)
}

// checkImage asks the API which image the container c runs. When the
// first-sight baseline was taken from another image, the container was
// legitimately updated (a new image in the pod spec, or a pod that reuses a
// persistent state directory): the old baseline is set aside and a new one
// is taken, with the Events ImageChanged and BaselineCreated, instead of an
// alert for every file the new image changed. When the API cannot tell
// (no access, the kubelet has not reported the container within a few
// seconds), the stored baseline is used: alerts, never a silent re-baseline.
func (s *sidecar) checkImage(ctx context.Context, c *target.Container) {
	s.mu.Lock()
	s.imageID = ""
	s.mu.Unlock()
	if s.cfg.Images == nil || c.ContainerID == "" {
		return
	}
	id, err := s.lookupImage(ctx, c.ContainerID)
	if err != nil {
		s.log.Warn("cannot tell the app container's image; the stored baseline is used", keyContainer, c.String(), keyError, err.Error())
		return
	}
	s.mu.Lock()
	s.imageID = id
	s.mu.Unlock()
	stored, err := readImageID(filepath.Join(s.cfg.StateDir, imageIDName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A baseline taken without the API: from now on it belongs to
		// this image (if the image changed in between, its files are
		// alerts: the safe side).
		if _, err := os.Stat(filepath.Join(s.cfg.StateDir, baselineName)); err == nil {
			s.recordImage()
		}
		return
	case err != nil:
		s.log.Warn("cannot read the stored image ID; the stored baseline is used", keyError, err.Error())
		return
	case stored == id:
		return
	}
	s.log.Info("the app container runs a new image: taking a new baseline", keyContainer, c.String(), keyImageID, id, keyPrevious, stored)
	s.event(eventNormal, kube.ReasonImageChanged, fmt.Sprintf("the app container runs image %s (the baseline was taken from %s): taking a new baseline", id, stored))
	base := filepath.Join(s.cfg.StateDir, baselineName)
	if err := os.Rename(base, filepath.Join(s.cfg.StateDir, prevBaselineName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("cannot set the old baseline aside; it stays in use", keyError, err.Error())
		return
	}
	s.mu.Lock()
	s.base, s.index = nil, nil
	s.mu.Unlock()
}

// lookupImage polls the pod's status until it shows the container: the
// kubelet reports a started container a moment after it runs.
func (s *sidecar) lookupImage(ctx context.Context, containerID string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, imageLookupWait)
	defer cancel()
	for {
		id, ok, err := s.cfg.Images.ImageIDOf(ctx, containerID)
		if err == nil && ok {
			return id, nil
		}
		if err != nil && (errors.Is(err, kube.ErrForbidden) || errors.Is(err, kube.ErrUnauthorized)) {
			return "", err
		}
		t := time.NewTimer(imageLookupPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = fmt.Errorf("the pod's status does not show container %.12s yet", containerID)
			}
			return "", err
		case <-t.C:
		}
	}
}

// recordImage stores the image ID of the monitored container as the one
// the first-sight baseline belongs to.
func (s *sidecar) recordImage() {
	s.mu.Lock()
	id := s.imageID
	s.mu.Unlock()
	if id == "" {
		return
	}
	path := filepath.Join(s.cfg.StateDir, imageIDName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		s.log.Error("cannot store the image ID of the baseline", keyError, err.Error())
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		s.log.Error("cannot store the image ID of the baseline", keyError, err.Error())
	}
}

func readImageID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if len(b) > maxImageIDBytes {
		return "", fmt.Errorf("%s: %d bytes is not an image ID", path, len(b))
	}
	return strings.TrimSpace(string(b)), nil
}
