package compare

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/origin"
)

// feed returns a next func over es that reuses one buffer, as a streaming
// baseline reader does.
func feed(es []attr.Entry) func() (*attr.Entry, error) {
	var buf attr.Entry
	i := 0
	return func() (*attr.Entry, error) {
		if i == len(es) {
			return nil, io.EOF
		}
		buf = es[i].Clone()
		i++
		return &buf, nil
	}
}

func mergerTree(rng *rand.Rand) []attr.Entry {
	var es []attr.Entry
	for i := range rng.IntN(40) {
		es = append(es, file("/d"+string(rune('a'+rng.IntN(5)))+"/f"+string(rune('a'+i%26)), func(e *attr.Entry) { e.Mode = uint32(rng.IntN(3)) }))
	}
	slices.SortFunc(es, func(a, b attr.Entry) int { return attr.ComparePaths(a.Path, b.Path) })
	return slices.CompactFunc(es, func(a, b attr.Entry) bool { return a.Path == b.Path })
}

func TestMergerAgreesWithEntries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		old, cur := mergerTree(rng), mergerTree(rng)
		limit := rng.IntN(4)
		want := Entries(old, cur, limit)
		m := NewMerger(feed(old), limit)
		var buf attr.Entry
		for i := range cur {
			buf = cur[i].Clone()
			m.Add(&buf)
			buf.Path, buf.Mode = "/overwritten", 0o777 // the merger must have copied what it kept
		}
		got, err := m.Finish()
		if err != nil {
			t.Fatal(err)
		}
		if got.Counts != want.Counts || got.Omitted != want.Omitted || !slices.Equal(got.Paths(), want.Paths()) {
			t.Fatalf("merger %+v %q, entries %+v %q", got.Counts, got.Paths(), want.Counts, want.Paths())
		}
		for i := range got.Findings {
			if !slices.Equal(got.Findings[i].Attributes, want.Findings[i].Attributes) || got.Findings[i].Kind != want.Findings[i].Kind {
				t.Fatalf("finding %d: %+v, want %+v", i, got.Findings[i], want.Findings[i])
			}
		}
	}
}

func TestMergerBaselineErrorIsNeverAPartialResult(t *testing.T) {
	bad := errors.New("corrupt entry 3")
	n := 0
	next := func() (*attr.Entry, error) {
		n++
		if n == 3 {
			return nil, bad
		}
		e := file("/f"+string(rune('a'+n)), nil)
		return &e, nil
	}
	m := NewMerger(next, 0)
	e := file("/fb", nil)
	m.Add(&e)
	e2 := file("/z", nil)
	m.Add(&e2)
	if r, err := m.Finish(); !errors.Is(err, bad) || r.Counts.Total() != 0 {
		t.Fatalf("Finish = %+v, %v; want the baseline's error and no result", r, err)
	}
}

// TestMergerByteBound checks that findings are listed up to
// MaxFindingBytes however large their entries, and counted after that.
func TestMergerByteBound(t *testing.T) {
	big := make([]byte, 64<<10)
	var xs []attr.Xattr
	for i := range 3 {
		xs = append(xs, attr.Xattr{Name: fmt.Sprintf("user.%d", i), Value: big})
	}
	n := 0
	next := func() (*attr.Entry, error) {
		if n == 2000 {
			return nil, io.EOF
		}
		n++
		return &attr.Entry{Path: fmt.Sprintf("/f%05d", n), Attrs: attr.Xattrs, Xattrs: xs}, nil
	}
	m := NewMerger(next, 100_000)
	r, err := m.Finish() // every baseline entry is removed
	if err != nil {
		t.Fatal(err)
	}
	per := 3 * (64 << 10)
	if r.Counts.Removed != 2000 || len(r.Findings)+r.Omitted != 2000 || r.Omitted == 0 {
		t.Fatalf("removed %d, listed %d, omitted %d", r.Counts.Removed, len(r.Findings), r.Omitted)
	}
	if held := len(r.Findings) * per; held > MaxFindingBytes || held < MaxFindingBytes-2*per {
		t.Errorf("listed %d findings of ~%d bytes: %d bytes, want just under %d", len(r.Findings), per, held, MaxFindingBytes)
	}
}

// TestMergerOrigins: the merger classifies every finding before counting
// it, and neither counts nor lists what is the runtime's.
func TestMergerOrigins(t *testing.T) {
	mounts := origin.NewMounts([]string{"/etc/hosts", "/scratch"})
	img := func(p string, layer uint16) attr.Entry {
		return file(p, func(e *attr.Entry) { e.Layer = layer })
	}
	old := []attr.Entry{img("/etc", 1), img("/etc/passwd", 1), img("/www", 2), img("/www/index.html", 2)}
	cur := []attr.Entry{
		file("/etc", func(e *attr.Entry) { e.Mtime++ }), // copied up for /etc/hosts
		file("/etc/hosts", nil),                         // bind-mounted by the runtime
		img("/etc/passwd", 1),
		file("/scratch", nil), file("/scratch/x", nil),
		img("/www", 2),
		file("/www/index.html", func(e *attr.Entry) { e.Mode = 0o777 }),
		file("/www/new.html", nil),
	}
	m := NewMerger(feed(old), 0)
	m.Origins(origin.New(true, []string{"sha256:a", "sha256:b"}, mounts))
	for i := range cur {
		m.Add(&cur[i])
	}
	got, err := m.Finish()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]origin.Origin{
		"/scratch/x":      {Kind: origin.Volume, Mount: "/scratch"},
		"/www/index.html": {Kind: origin.Image, Layer: 2, LayerDigest: "sha256:b"},
		"/www/new.html":   {Kind: origin.Container},
	}
	if got.Counts != (Counts{Added: 2, Changed: 1}) || len(got.Findings) != len(want) {
		t.Fatalf("counts %+v, findings %q; want 2 added, 1 changed: %v", got.Counts, got.Paths(), want)
	}
	for _, f := range got.Findings {
		if f.Origin != want[f.Path] {
			t.Errorf("%s: origin %+v, want %+v", f.Path, f.Origin, want[f.Path])
		}
	}
}
