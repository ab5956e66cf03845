package sidecar

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/target"
)

// TestRunRequiresSubject checks that a sidecar told which subject to
// expect refuses a signed baseline made for another one before it looks
// for the app (issue 11 item 7), and runs with the right one.
func TestRunRequiresSubject(t *testing.T) {
	proc := t.TempDir()
	pid := strconv.Itoa(os.Getpid())
	if err := os.Symlink("/proc/"+pid, filepath.Join(proc, pid)); err != nil {
		t.Fatal(err)
	}
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "b.pfb")
	b := &baseline.Baseline{Header: baseline.Header{Subject: "db/data", PolicyDigest: policy.Default().Digest()}}
	if err := baseline.WriteFile(path, b, key); err != nil {
		t.Fatal(err)
	}
	for subject, wantErr := range map[string]bool{"web/www": true, "db/data": false} {
		cfg := Config{Policy: policy.Default(), BaselineFile: path, VerifyKey: pub, Subject: subject, Inotify: true, Plan: logPlan,
			Retarget: 10 * time.Millisecond, Selector: target.Selector{ContainerID: strings.Repeat("e", 64)},
			Finder: &target.Finder{Proc: proc, Infra: -1}}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := Run(ctx, cfg, slog.New(&logRecorder{}))
		cancel()
		switch {
		case wantErr && (!errors.Is(err, baseline.ErrBinding) || !strings.Contains(err.Error(), `not "web/www"`)):
			t.Errorf("subject %s: err = %v, want ErrBinding", subject, err)
		case !wantErr && err != nil:
			t.Errorf("subject %s: %v", subject, err)
		}
	}
	// A baseline with more entries than a scan under the policy records
	// is refused: the sidecar holds it whole (issue 11 item 4).
	small := policy.Default()
	small.Limits.MaxFiles = 1
	b.Entries = []attr.Entry{{Path: "/a"}, {Path: "/b"}}
	if err := baseline.WriteFile(path, b, key); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Policy: small, BaselineFile: path, VerifyKey: pub, Inotify: true, Plan: logPlan,
		Selector: target.Selector{ContainerID: strings.Repeat("e", 64)}, Finder: &target.Finder{Proc: proc, Infra: -1}}
	if err := Run(context.Background(), cfg, slog.New(&logRecorder{})); !errors.Is(err, baseline.ErrFormat) || !strings.Contains(err.Error(), "entry count 2 is more than 1") {
		t.Errorf("a baseline over the policy's maxFiles: %v", err)
	}
	cfg = Config{Policy: policy.Default(), StateDir: t.TempDir(), Subject: "web/www", Inotify: true, Selector: target.Selector{Exe: "/app"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--subject requires --baseline") {
		t.Errorf("--subject without --baseline: %v", err)
	}
}
