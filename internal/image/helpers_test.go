package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
)

// everything records every attribute of every path.
type everything struct{}

func (everything) Match(string) (attr.Set, bool) { return attr.All, false }
func (everything) Descend(string) bool           { return true }

// item is one tar entry of a test layer.
type item struct {
	name     string
	typ      byte
	body     string
	link     string
	mode     int64
	uid, gid int
	mtime    time.Time
	pax      map[string]string
	major    int64
	minor    int64
}

var epoch = time.Unix(1_700_000_000, 123456789)

// layer returns a tar stream of items, PAX format (nanosecond times).
func layer(t testing.TB, items ...item) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, it := range items {
		h := &tar.Header{
			Name: it.name, Typeflag: it.typ, Linkname: it.link, Mode: it.mode,
			Uid: it.uid, Gid: it.gid, ModTime: it.mtime, PAXRecords: it.pax,
			Devmajor: it.major, Devminor: it.minor, Format: tar.FormatPAX,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.ModTime.IsZero() {
			h.ModTime = epoch
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(it.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", it.name, err)
		}
		if _, err := tw.Write([]byte(it.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func dir(name string) item             { return item{name: name, typ: tar.TypeDir} }
func file(name, body string) item      { return item{name: name, body: body} }
func wh(name string) item              { return item{name: name, body: ""} }
func symlink(name, target string) item { return item{name: name, typ: tar.TypeSymlink, link: target} }
func hardlink(name, target string) item {
	return item{name: name, typ: tar.TypeLink, link: target}
}

// applyAll applies layers to a new tree with m (everything when nil).
func applyAll(t testing.TB, m Matcher, limits Limits, layers ...[]byte) (*Tree, error) {
	t.Helper()
	if m == nil {
		m = everything{}
	}
	tr := NewTree(m, limits)
	for i, l := range layers {
		if err := tr.Apply(i+1, bytes.NewReader(l)); err != nil {
			return tr, err
		}
	}
	return tr, nil
}

// entries returns what tr records, by path, and checks their order.
func entries(t testing.TB, tr *Tree) map[string]attr.Entry {
	t.Helper()
	out := map[string]attr.Entry{}
	counted := -1
	prev := ""
	tr.Entries(func(n int) { counted = n }, func(e *attr.Entry) {
		if prev != "" && attr.ComparePaths(prev, e.Path) >= 0 {
			t.Errorf("entry %q after %q: out of order", e.Path, prev)
		}
		prev = e.Path
		out[e.Path] = e.Clone()
	})
	if counted != len(out) {
		t.Errorf("count said %d entries, emitted %d", counted, len(out))
	}
	return out
}

// mustApply applies layers with everything and returns the entries.
func mustApply(t testing.TB, layers ...[]byte) map[string]attr.Entry {
	t.Helper()
	tr, err := applyAll(t, nil, Limits{}, layers...)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return entries(t, tr)
}

// paths returns the sorted paths of es.
func paths(es map[string]attr.Entry) []string {
	out := make([]string, 0, len(es))
	for p := range es {
		out = append(out, p)
	}
	sortPaths(out)
	return out
}

func sortPaths(p []string) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && attr.ComparePaths(p[j-1], p[j]) > 0; j-- {
			p[j-1], p[j] = p[j], p[j-1]
		}
	}
}

func sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
