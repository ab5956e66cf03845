package sidecar

import (
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/watch"
)

// TestImageBaselineReadIntoIndex: a baseline from the ConfigMap (and the
// registry, which reads its pulled file the same way) goes straight into
// the index, entry by entry: what reading it allocates is about the
// index, not the decoded baseline on top of it (a sidecar of 300,000
// files would hold both at start).
func TestImageBaselineReadIntoIndex(t *testing.T) {
	const n = 50000
	digest := "sha256:" + strings.Repeat("a", 64)
	pub, key, _ := ed25519.GenerateKey(nil)
	cm := t.TempDir()
	p := policy.Default()
	entries := make([]attr.Entry, n)
	for i := range entries {
		entries[i] = attr.Entry{Path: fmt.Sprintf("/srv/%06d/file-with-a-longer-name", i), Attrs: attr.Type | attr.Mode | attr.Size | attr.SHA256,
			Type: attr.TypeRegular, Mode: 0o644, Size: int64(i), Hash: make([]byte, 32)}
	}
	b := &baseline.Baseline{
		Header: baseline.Header{Subject: digest, Serial: 1, Compared: attr.ImageStable, PolicyDigest: p.Digest(),
			Image: &baseline.Image{Manifest: digest, Config: "sha256:" + strings.Repeat("c", 64), Platform: "linux/amd64"}},
		Entries: entries,
	}
	if err := baseline.WriteFile(filepath.Join(cm, "web.pfb"), b, key); err != nil {
		t.Fatal(err)
	}
	b, entries = nil, nil
	s, _, _ := newImageSidecar(t, Config{BaselineSource: metrics.BaselineConfigMap, BaselineFile: cm, VerifyKey: pub})
	opts := baseline.ReadOptions{VerifyKey: pub, MaxEntries: n + 1, Binding: baseline.Binding{ImageDigest: digest, Platform: "linux/amd64"}}
	alloc := func(f func()) uint64 {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		f()
		runtime.ReadMemStats(&m1)
		return m1.TotalAlloc - m0.TotalAlloc
	}
	var idx *watch.Index
	streamed := alloc(func() {
		var err error
		if _, idx, err = s.pickBaseline(opts); err != nil {
			t.Fatal(err)
		}
	})
	decoded := alloc(func() {
		d, err := baseline.ReadFile(filepath.Join(cm, "web.pfb"), opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := watch.IndexOf(d.Entries); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%d entries: read into the index %d KiB (index %d KiB); decoded then indexed %d KiB", idx.Len(), streamed>>10, idx.Bytes()>>10, decoded>>10)
	if idx.Len() != n {
		t.Fatalf("index of %d entries, want %d", idx.Len(), n)
	}
	// The index grows by doubling and each entry's path is read once:
	// about twice the index. Decoded first, about four times.
	if limit := 3 * uint64(idx.Bytes()); streamed > limit {
		t.Errorf("reading the baseline allocated %d KiB, more than 3x its index (%d KiB): decoded whole on the way?", streamed>>10, limit>>10)
	}
}
