package scan

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestProgress: Options.Progress shows the work while the scan runs, and
// adds up to the result's counts at the end.
func TestProgress(t *testing.T) {
	root := t.TempDir()
	for d := range 5 {
		dir := filepath.Join(root, fmt.Sprintf("d%d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 100 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), make([]byte, 10+f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var p Progress
	var seen atomic.Int64 // the most entries seen by an open, while the scan ran
	opts := Options{Workers: 1, Progress: &p, beforeOpen: func(string) {
		if n := p.Entries.Load(); n > seen.Load() {
			seen.Store(n)
		}
	}}
	res := scanT(t, root, opts)
	if got := p.Entries.Load(); got != res.Stats.Entries || got != 506 {
		t.Errorf("Progress.Entries = %d at the end, want the result's %d (506)", got, res.Stats.Entries)
	}
	if got := p.Bytes.Load(); got != res.Stats.HashedBytes || got == 0 {
		t.Errorf("Progress.Bytes = %d at the end, want the result's %d", got, res.Stats.HashedBytes)
	}
	if n := seen.Load(); n == 0 || n >= 506 {
		t.Errorf("the most entries seen during the scan = %d, want some but not all of 506", n)
	}
}
