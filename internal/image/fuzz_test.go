package image

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// FuzzApply applies arbitrary bytes as a layer over a fixed base layer. It
// must never panic or hang; whatever it accepts must be a tree a baseline
// can hold: clean paths in order, one entry per node held, and the same
// result every time.
func FuzzApply(f *testing.F) {
	base := layer(f, dir("a/"), file("a/f", "f"), hardlink("a/g", "a/f"), symlink("s", "/etc"),
		dir("d/"), file("d/x", "x"), item{name: "n", typ: tar.TypeChar, major: 1, minor: 3})
	for _, seed := range [][]byte{
		base,
		layer(f, wh(".wh.a"), dir("a/"), file("a/new", "n")),
		layer(f, dir("d/"), wh("d/.wh..wh..opq"), file("d/y", "y")),
		layer(f, hardlink("h", "a/g"), wh("a/.wh.f")),
		layer(f, item{name: "p", body: "p", pax: map[string]string{"SCHILY.xattr.user.x": "1"}}),
		layer(f, file("s/escape", "x")),
		layer(f, file("../escape", "x")),
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		first, err := fuzzApply(t, base, data)
		if err != nil {
			return
		}
		again, err := fuzzApply(t, base, data)
		if err != nil || !equalEntries(first, again) {
			t.Fatalf("applied once, not twice the same: %v", err)
		}
	})
}

func fuzzApply(t *testing.T, base, data []byte) (map[string]attr.Entry, error) {
	tr := NewTree(everything{}, Limits{MaxFiles: 10_000, MaxFileBytes: 1 << 20})
	if err := tr.Apply(1, bytes.NewReader(base)); err != nil {
		t.Fatalf("base layer: %v", err)
	}
	if err := tr.Apply(2, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	es := entries(t, tr)
	if len(es) != tr.live+1 {
		t.Fatalf("%d entries, %d nodes held", len(es), tr.live)
	}
	for p, e := range es {
		if p != "/" && (!strings.HasPrefix(p, "/") || strings.Contains(p, "//") || strings.HasSuffix(p, "/") ||
			strings.Contains(p+"/", "/../") || strings.Contains(p+"/", "/./") || strings.IndexByte(p, 0) >= 0) {
			t.Fatalf("unclean path %q", p)
		}
		if len(e.Hash) != 0 && e.Type != attr.TypeRegular {
			t.Fatalf("%q: a %s with a hash", p, e.Type)
		}
	}
	return es, nil
}
