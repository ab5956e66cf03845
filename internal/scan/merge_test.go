package scan

import (
	"fmt"
	"slices"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// TestMerge covers what a changing tree can leave for merge: a name listed
// twice, and an entry whose parent directory was recorded as something else.
func TestMerge(t *testing.T) {
	mk := func(path string, typ attr.FileType) attr.Entry {
		return attr.Entry{Path: path, Type: typ, Attrs: attr.Type, Hash: []byte{1, 2}}
	}
	tests := []struct {
		name    string
		entries [][]attr.Entry // per worker
		want    []string
		dups    int
	}{
		{"plain", [][]attr.Entry{
			{mk("/", attr.TypeDir), mk("/b", attr.TypeRegular), mk("/a/x/z", attr.TypeRegular)},
			{mk("/a.b", attr.TypeRegular), mk("/a", attr.TypeDir), mk("/a/x/y", attr.TypeRegular), mk("/a/x", attr.TypeDir)},
		}, []string{"/", "/a", "/a/x", "/a/x/y", "/a/x/z", "/a.b", "/b"}, 0},
		{"duplicate", [][]attr.Entry{
			{mk("/", attr.TypeDir), mk("/a", attr.TypeRegular), mk("/d", attr.TypeDir)},
			{mk("/a", attr.TypeRegular), mk("/d/f", attr.TypeRegular), mk("/d/f", attr.TypeRegular)},
		}, []string{"/", "/a", "/d", "/d/f"}, 2},
		// "/a" was recorded as a symlink (swapped after it was listed):
		// "/a/f" has no parent directory; the fallback keeps it in order.
		{"orphan", [][]attr.Entry{
			{mk("/", attr.TypeDir), mk("/a", attr.TypeSymlink)},
			{mk("/a/f", attr.TypeRegular), mk("/b", attr.TypeRegular)},
		}, []string{"/", "/a", "/a/f", "/b"}, 0},
		{"empty", nil, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ws []*worker
			for _, es := range tc.entries {
				w := &worker{}
				for i := range es {
					w.record(&es[i])
				}
				ws = append(ws, w)
			}
			// Whether the depth-first merge managed on its own, without the
			// fallback: every case but the orphan.
			var recs []*rec
			for _, w := range ws {
				for i := range w.cur {
					recs = append(recs, &w.cur[i])
				}
			}
			all := func(yield func(*rec) bool) {
				for _, r := range recs {
					if !yield(r) {
						return
					}
				}
			}
			tr := buildTree(all, len(recs))
			if ok := tr != nil && tr.walk(nil, func(*rec) {}) == len(recs); ok != (tc.name != "orphan") {
				t.Errorf("tree walk reached all = %v", ok)
			}
			res := merge(ws, nil, nil)
			// Emitting gives the same entries and warnings, and counts
			// them first, also when the tree walk falls back to sorting.
			var emitted []string
			count := -1
			eres := merge(cloneWorkers(tc.entries), func(e *attr.Entry) { emitted = append(emitted, e.Path) }, func(n int) {
				if emitted != nil {
					t.Error("Count after Emit")
				}
				count = n
			})
			if !slices.Equal(emitted, tc.want) || count != len(tc.want) || len(eres.Warnings) != tc.dups || eres.Stats.Entries != int64(len(tc.want)) {
				t.Errorf("emitting: %q, count %d, warnings %v, stats %+v", emitted, count, eres.Warnings, eres.Stats)
			}
			got := paths(res)
			if !slices.Equal(got, tc.want) {
				t.Errorf("paths %q, want %q", got, tc.want)
			}
			if len(res.Warnings) != tc.dups || res.Stats.Entries != int64(len(tc.want)) {
				t.Errorf("warnings %v, stats %+v", res.Warnings, res.Stats)
			}
			for _, e := range res.Entries {
				if len(e.Hash) != 2 || e.Attrs != attr.Type {
					t.Errorf("%q lost fields: %+v", e.Path, e)
				}
			}
		})
	}
}

// TestRec checks that the compact form keeps every field.
func TestRec(t *testing.T) {
	es := []attr.Entry{
		{Path: "/a", Attrs: attr.All, Type: attr.TypeRegular, Mode: 0o7777, UID: 1, GID: 2, Size: 3, Inode: 4, Nlink: 5, Mtime: -6, Ctime: 7, Hash: make([]byte, 64), Racy: true},
		{Path: "/b", Type: attr.TypeChar, Rdev: 99, Nlink: 1 << 40, Xattrs: []attr.Xattr{{Name: "user.x", Value: []byte("y")}}},
		{Path: "/c", Type: attr.TypeSymlink, Target: "\xff/x"},
		{Path: "/d"},
	}
	for _, e := range es {
		r := makeRec(&e)
		got := r.entry()
		if got.Path != e.Path || got.Attrs != e.Attrs || got.Type != e.Type || got.Mode != e.Mode || got.UID != e.UID || got.GID != e.GID ||
			got.Size != e.Size || got.Inode != e.Inode || got.Nlink != e.Nlink || got.Rdev != e.Rdev || got.Target != e.Target ||
			got.Mtime != e.Mtime || got.Ctime != e.Ctime || got.Racy != e.Racy || len(got.Hash) != len(e.Hash) || len(got.Xattrs) != len(e.Xattrs) {
			t.Errorf("round trip of %+v gave %+v", e, got)
		}
	}
}

// cloneWorkers returns workers that recorded entries, one per element.
func cloneWorkers(entries [][]attr.Entry) []*worker {
	var ws []*worker
	for _, es := range entries {
		w := &worker{}
		for i := range es {
			w.record(&es[i])
		}
		ws = append(ws, w)
	}
	return ws
}

// TestMergeEmitAllocations checks that emitting allocates per directory at
// most, not per entry: a garbage entry per emitted file ran the CLI's heap
// up to its GC goal at its peak of live memory (8 MiB of RSS at 100,000
// files).
func TestMergeEmitAllocations(t *testing.T) {
	const dirs, files = 100, 100
	es := []attr.Entry{{Path: "/", Type: attr.TypeDir}}
	for d := range dirs {
		dir := fmt.Sprintf("/d%03d", d)
		es = append(es, attr.Entry{Path: dir, Type: attr.TypeDir})
		for f := range files {
			es = append(es, attr.Entry{Path: fmt.Sprintf("%s/f%03d", dir, f), Type: attr.TypeRegular, Hash: []byte{1}})
		}
	}
	emitted := 0
	allocs := testing.AllocsPerRun(3, func() {
		emitted = 0
		merge(cloneWorkers([][]attr.Entry{es}), func(*attr.Entry) { emitted++ }, func(int) {})
	})
	// cloneWorkers itself allocates a chunk per 1,024 records.
	t.Logf("%d entries emitted with %.0f allocations", emitted, allocs)
	if emitted != len(es) || allocs > 4*dirs {
		t.Errorf("%d entries emitted with %.0f allocations, want at most %d", emitted, allocs, 4*dirs)
	}
}
