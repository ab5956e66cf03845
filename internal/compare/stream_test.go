package compare

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// reusing returns a next function over es that, like baseline.Reader,
// returns the same Entry every time, with its Hash and Xattrs in buffers it
// overwrites on the next call, and poison, which overwrites them once more.
func reusing(es []attr.Entry) (next func() (*attr.Entry, error), poison func()) {
	var scratch attr.Entry
	hashBuf := make([]byte, 64)
	var xattrs []attr.Xattr
	i := 0
	poison = func() {
		for k := range hashBuf {
			hashBuf[k] = 0xee
		}
		for k := range xattrs[:cap(xattrs)] {
			xattrs[:cap(xattrs)][k] = attr.Xattr{Name: "poisoned", Value: []byte("poisoned")}
		}
		scratch = attr.Entry{Path: "/poisoned", Mode: 0o7777}
	}
	next = func() (*attr.Entry, error) {
		if i == len(es) {
			poison()
			return nil, io.EOF
		}
		e := &es[i]
		i++
		scratch = *e
		if e.Hash != nil {
			scratch.Hash = append(hashBuf[:0], e.Hash...)
		}
		if e.Xattrs != nil {
			xattrs = xattrs[:0]
			for _, x := range e.Xattrs {
				xattrs = append(xattrs, attr.Xattr{Name: x.Name, Value: x.Value})
			}
			scratch.Xattrs = xattrs
		}
		return &scratch, nil
	}
	return next, poison
}

// randomTree returns n random entries sorted by attr.ComparePaths, with
// path components chosen to exercise the order ("a" < "a.b" < "a0"
// component-wise, unlike byte-wise).
func randomTree(rng *rand.Rand, n int) []attr.Entry {
	comps := []string{"a", "a.b", "a0", "b", "bin", "\xff", "a-", "z"}
	seen := map[string]bool{}
	var es []attr.Entry
	for len(es) < n {
		p := ""
		for range 1 + rng.IntN(4) {
			p += "/" + comps[rng.IntN(len(comps))]
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		es = append(es, randomEntry(rng, p))
	}
	slices.SortFunc(es, func(x, y attr.Entry) int { return attr.ComparePaths(x.Path, y.Path) })
	return es
}

func randomEntry(rng *rand.Rand, path string) attr.Entry {
	e := attr.Entry{Path: path, Attrs: attr.All, Type: attr.TypeRegular, Mode: 0o644, Size: rng.Int64N(10),
		Inode: rng.Uint64N(5), Nlink: 1, Mtime: rng.Int64N(3), Ctime: rng.Int64N(3)}
	switch rng.IntN(6) {
	case 0:
		e.Type, e.Attrs = attr.TypeDir, attr.All&^attr.SHA256
	case 1:
		e.Type, e.Target = attr.TypeSymlink, "/t"
	case 2:
		e.Attrs |= attr.Growing
	}
	if e.Type == attr.TypeRegular {
		e.Hash = []byte(fmt.Sprintf("%032d", rng.IntN(3)))
	}
	if rng.IntN(3) == 0 {
		e.Xattrs = []attr.Xattr{{Name: "security.capability", Value: []byte{byte(rng.IntN(2))}}}
	}
	return e
}

// mutate returns a modified copy of es: entries removed, added and changed.
func mutate(rng *rand.Rand, es []attr.Entry) []attr.Entry {
	var out []attr.Entry
	for _, e := range es {
		switch rng.IntN(8) {
		case 0: // removed
			continue
		case 1: // changed
			e = e.Clone()
			switch rng.IntN(5) {
			case 0:
				e.Mode ^= 0o4000
			case 1:
				e.Size += rng.Int64N(3) - 1
			case 2:
				if e.Hash != nil {
					e.Hash[0] ^= 1
				}
			case 3:
				e.Xattrs = nil
			case 4:
				e.Attrs &^= attr.Mtime
				e.Mtime = 0
			}
		case 2: // replaced by something else
			e = randomEntry(rng, e.Path)
		}
		out = append(out, e)
	}
	have := map[string]bool{}
	for _, e := range out {
		have[e.Path] = true
	}
	for _, e := range randomTree(rng, rng.IntN(10)) {
		if !have[e.Path] {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(x, y attr.Entry) int { return attr.ComparePaths(x.Path, y.Path) })
	return out
}

// TestStreamMatchesEntries checks on random trees that a Merger, fed
// baseline entries in a reused buffer, finds exactly what Entries finds, and that both agree
// with a comparison by path lookup.
func TestStreamMatchesEntries(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := range 500 {
		old := randomTree(rng, rng.IntN(60))
		cur := mutate(rng, old)
		if iter%10 == 0 {
			cur = nil
		} else if iter%10 == 1 {
			old = nil
		}
		for _, limit := range []int{0, 1, rng.IntN(10)} {
			want := Entries(old, cur, limit)
			next, poison := reusing(old)
			got, err := mergeSlice(NewMerger(next, limit), cur)
			if err != nil {
				t.Fatal(err)
			}
			poison()
			assertSameResult(t, fmt.Sprintf("iteration %d, limit %d", iter, limit), got, want)
		}
		checkAgainstLookup(t, old, cur)
	}
}

func assertSameResult(t *testing.T, what string, got, want Result) {
	t.Helper()
	if got.Counts != want.Counts || got.Omitted != want.Omitted || len(got.Findings) != len(want.Findings) {
		t.Fatalf("%s: Merger counts %+v omitted %d listed %d, Entries %+v %d %d", what,
			got.Counts, got.Omitted, len(got.Findings), want.Counts, want.Omitted, len(want.Findings))
	}
	for i, g := range got.Findings {
		w := want.Findings[i]
		if g.Path != w.Path || g.Kind != w.Kind || !slices.Equal(g.Attributes, w.Attributes) {
			t.Fatalf("%s: finding %d: Merger %s %s %q, Entries %s %s %q", what, i, g.Kind, g.Path, g.Attributes, w.Kind, w.Path, w.Attributes)
		}
		if (g.Old == nil) != (w.Old == nil) || g.Old != nil && !reflect.DeepEqual(*g.Old, *w.Old) {
			t.Fatalf("%s: finding %d (%s): Merger's old entry %#v, Entries' %#v", what, i, g.Path, g.Old, w.Old)
		}
		// The merger keeps copies of the current entries it lists (its
		// callers reuse them); they must equal what Entries points at.
		if (g.New == nil) != (w.New == nil) || g.New != nil && !reflect.DeepEqual(*g.New, *w.New) {
			t.Fatalf("%s: finding %d (%s): new entries differ: Merger %#v, Entries %#v", what, i, g.Path, g.New, w.New)
		}
	}
}

// checkAgainstLookup counts the findings of Entries by path lookup.
func checkAgainstLookup(t *testing.T, old, cur []attr.Entry) {
	t.Helper()
	om, cm := map[string]*attr.Entry{}, map[string]*attr.Entry{}
	for i := range old {
		om[old[i].Path] = &old[i]
	}
	for i := range cur {
		cm[cur[i].Path] = &cur[i]
	}
	var want Counts
	for p, o := range om {
		if n, ok := cm[p]; !ok {
			want.Removed++
		} else if Diff(o, n) != nil {
			want.Changed++
		}
	}
	for p := range cm {
		if om[p] == nil {
			want.Added++
		}
	}
	if got := Entries(old, cur, 0).Counts; got != want {
		t.Fatalf("Entries counts %+v, by lookup %+v", got, want)
	}
}

func TestStreamError(t *testing.T) {
	old := []attr.Entry{file("/", nil), file("/a", nil), file("/b", nil)}
	boom := errors.New("corrupt entry")
	for fail := range len(old) + 1 {
		i := 0
		next := func() (*attr.Entry, error) {
			if i == fail {
				return nil, boom
			}
			i++
			if i > len(old) {
				return nil, io.EOF
			}
			return &old[i-1], nil
		}
		// The scan lacks /b: a partial result would call it clean or
		// removed; there must be none.
		r, err := mergeSlice(NewMerger(next, 0), old[:2])
		if !errors.Is(err, boom) {
			t.Errorf("error after %d entries: err = %v", fail, err)
		}
		if !reflect.DeepEqual(r, Result{}) {
			t.Errorf("error after %d entries: result %+v, want none", fail, r)
		}
	}
}
