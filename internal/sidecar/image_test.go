package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/target"
)

// fakeImages answers ImageIDOf from a map of container ID to image ID.
type fakeImages struct {
	ids map[string]string
	err error
}

func (f *fakeImages) ImageIDOf(_ context.Context, containerID string) (string, bool, error) {
	if f.err != nil {
		return "", false, f.err
	}
	id, ok := f.ids[containerID]
	return id, ok, nil
}

// fakeReporter records the Events the sidecar posts.
type fakeReporter struct {
	mu       sync.Mutex
	events   []string
	messages []string
}

func (f *fakeReporter) Event(_, reason, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, reason)
	f.messages = append(f.messages, message)
}
func (f *fakeReporter) SetQuarantine(bool, string)  {}
func (f *fakeReporter) Delete(time.Duration) error  { return nil }
func (f *fakeReporter) Run(context.Context)         {}
func (f *fakeReporter) Close(context.Context) error { return nil }
func (f *fakeReporter) reasons() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func TestCheckImage(t *testing.T) {
	const (
		cid  = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"
		img1 = "docker.io/library/hello@sha256:1111"
		img2 = "docker.io/library/hello@sha256:2222"
	)
	dir := t.TempDir()
	base := filepath.Join(dir, baselineName)
	if err := os.WriteFile(base, []byte("a baseline"), 0o600); err != nil {
		t.Fatal(err)
	}
	images := &fakeImages{ids: map[string]string{cid: img1}}
	rep := &fakeReporter{}
	s := &sidecar{
		cfg: Config{StateDir: dir, Images: images, Kube: rep, Plan: respond.Plan{Actions: []respond.Action{respond.ActionEvent}}},
		log: slog.New(slog.DiscardHandler),
	}
	c := &target.Container{PID: 42, ContainerID: cid}
	ctx := context.Background()

	// A baseline without a recorded image gets the current one.
	s.base = &baseline.Baseline{}
	s.checkImage(ctx, c)
	if got, _ := readImageID(filepath.Join(dir, imageIDName)); got != img1 {
		t.Fatalf("recorded %q, want %q", got, img1)
	}
	// The same image: the baseline stays.
	s.checkImage(ctx, c)
	if s.base == nil {
		t.Fatal("the same image dropped the baseline")
	}
	// A new image: the old baseline is set aside, a new one will be taken,
	// and that is an Event, not an alert.
	images.ids[cid] = img2
	s.checkImage(ctx, c)
	if s.base != nil {
		t.Error("a new image kept the old baseline in use")
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old baseline is still at %s: %v", base, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, prevBaselineName)); err != nil || string(b) != "a baseline" {
		t.Errorf("the old baseline was not kept aside: %q %v", b, err)
	}
	if got := rep.reasons(); !slices.Equal(got, []string{kube.ReasonImageChanged}) {
		t.Errorf("events %v", got)
	}
	// recordImage after the new baseline is taken stores the new image.
	s.recordImage()
	if got, _ := readImageID(filepath.Join(dir, imageIDName)); got != img2 {
		t.Errorf("recorded %q after the new baseline, want %q", got, img2)
	}

	// The API cannot tell (403): the stored baseline stays, whatever the
	// image: alerts rather than a silent re-baseline.
	s.base = &baseline.Baseline{}
	images.err = kube.ErrForbidden
	s.checkImage(ctx, c)
	if s.base == nil || s.imageID != "" {
		t.Errorf("no API: base %v, image %q", s.base, s.imageID)
	}
	// The kubelet has not reported the container: give up after a while.
	images.err = nil
	start := time.Now()
	s.checkImage(ctx, &target.Container{PID: 43, ContainerID: strings.Repeat("f", 64)})
	if s.base == nil || time.Since(start) < imageLookupWait/2 {
		t.Errorf("unknown container: base %v after %v", s.base, time.Since(start))
	}
}
