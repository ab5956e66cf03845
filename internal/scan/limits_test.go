package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
)

func TestTreeLimits(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "a", "b", "c", "d", "file"), "deep")
	write(t, filepath.Join(root, "a", "small"), "small")
	write(t, filepath.Join(root, "big"), strings.Repeat("x", 1000))
	// "/", a, a/b, a/b/c, a/b/c/d, a/b/c/d/file, a/small, big
	const total = 8

	t.Run("depth", func(t *testing.T) {
		res := scanT(t, root, Options{MaxDepth: 2, Now: future})
		if e := mustFind(t, res, "/a/b/c"); e.Type != attr.TypeDir {
			t.Errorf("/a/b/c: %+v", e)
		}
		if find(res, "/a/b/c/d") != nil || len(res.Entries) != 6 {
			t.Errorf("descended past the depth limit: %q", paths(res))
		}
		if len(res.Warnings) != 1 || res.Warnings[0].Path != "/a/b/c" || !errors.Is(res.Warnings[0], ErrLimit) {
			t.Errorf("warnings: %v", res.Warnings)
		}
	})
	t.Run("files", func(t *testing.T) {
		_, err := scanErr(t, root, Options{MaxFiles: total - 1})
		if !errors.Is(err, ErrLimit) {
			t.Errorf("MaxFiles %d: err = %v, want ErrLimit", total-1, err)
		}
		res := scanT(t, root, Options{MaxFiles: total})
		if len(res.Entries) != total {
			t.Errorf("MaxFiles %d: %d entries", total, len(res.Entries))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		res := scanT(t, root, Options{MaxFileBytes: 999, Now: future})
		if e := mustFind(t, res, "/big"); e.Hash != nil || e.Size != 1000 || !hasWarning(res, "/big", "limit") {
			t.Errorf("/big: %+v, warnings %v", e, res.Warnings)
		}
		if e := mustFind(t, res, "/a/small"); !bytes.Equal(e.Hash, sum256([]byte("small"))) {
			t.Errorf("/a/small: %+v", e)
		}
		res = scanT(t, root, Options{MaxFileBytes: 1000, Now: future})
		if e := mustFind(t, res, "/big"); e.Hash == nil || len(res.Warnings) != 0 {
			t.Errorf("/big at the limit: %+v, warnings %v", e, res.Warnings)
		}
	})
}

func TestTreeQuick(t *testing.T) {
	root := t.TempDir()
	for i := range 5 {
		write(t, filepath.Join(root, "d", fmt.Sprintf("f%d", i)), fmt.Sprintf("content %d", i))
	}
	baseline := func(now func() time.Time) hashIndex {
		res := scanT(t, root, Options{Now: now})
		m := hashIndex{}
		for i := range res.Entries {
			m[res.Entries[i].Path] = &res.Entries[i]
		}
		return m
	}
	prior := baseline(future)
	res := scanT(t, root, Options{QuickHashes: prior, Now: future})
	if res.Stats.Reused != 5 || res.Stats.Hashed != 0 {
		t.Errorf("stats %+v, want 5 reused, 0 hashed", res.Stats)
	}
	for i := range 5 {
		p := fmt.Sprintf("/d/f%d", i)
		if e := mustFind(t, res, p); !bytes.Equal(e.Hash, prior[p].Hash) || !bytes.Equal(e.Hash, sum256(fmt.Appendf(nil, "content %d", i))) {
			t.Errorf("%s: hash %x", p, e.Hash)
		}
	}

	// Same size, mtime put back: ctime moved, so the file is hashed again.
	rewriteKeepingMtime(t, filepath.Join(root, "d", "f1"), "CONTENT 1")
	res = scanT(t, root, Options{QuickHashes: prior, Now: future})
	if res.Stats.Reused != 4 || res.Stats.Hashed != 1 {
		t.Errorf("stats %+v, want 4 reused, 1 hashed", res.Stats)
	}
	if e := mustFind(t, res, "/d/f1"); !bytes.Equal(e.Hash, sum256([]byte("CONTENT 1"))) {
		t.Errorf("/d/f1: change not seen: hash %x", e.Hash)
	}

	// A baseline taken right after the files changed is racy: nothing reused.
	racy := baseline(time.Now)
	if !racy["/d/f1"].Racy {
		t.Errorf("/d/f1 not racy right after a write")
	}
	res = scanT(t, root, Options{QuickHashes: racy, Now: future})
	if res.Stats.Reused != 0 || res.Stats.Hashed != 5 {
		t.Errorf("racy prior: stats %+v, want 0 reused", res.Stats)
	}
	// Another algorithm, or a prior without a hash: hashed.
	other := scanT(t, root, Options{Matcher: setMatcher(attr.All&^attr.SHA256 | attr.BLAKE3), Now: future, QuickHashes: prior})
	if other.Stats.Reused != 0 {
		t.Errorf("reused a hash of another algorithm: %+v", other.Stats)
	}
}

// hashIndex is a QuickHashes over a scan's entries, as baseline.QuickIndex
// is over a baseline's.
type hashIndex map[string]*attr.Entry

func (m hashIndex) Unchanged(path string, alg attr.Set, ino uint64, size, mtime, ctime int64) []byte {
	e, ok := m[path]
	if !ok || e.Racy || e.Type != attr.TypeRegular || e.HashAlg() != alg || e.Inode != ino || e.Size != size || e.Mtime != mtime || e.Ctime != ctime {
		return nil
	}
	return e.Hash
}

// TestTreeQuickHashes checks quick mode with a QuickHashes: unchanged files
// keep the index's hash (the bytes themselves, not a copy) without being
// opened, and a file whose ctime moved is hashed.
func TestTreeQuickHashes(t *testing.T) {
	root := t.TempDir()
	for i := range 5 {
		write(t, filepath.Join(root, "d", fmt.Sprintf("f%d", i)), fmt.Sprintf("content %d", i))
	}
	base := scanT(t, root, Options{Now: future})
	idx := hashIndex{}
	for i := range base.Entries {
		idx[base.Entries[i].Path] = &base.Entries[i]
	}
	rewriteKeepingMtime(t, filepath.Join(root, "d", "f1"), "CONTENT 1")
	var opened []string
	var mu sync.Mutex
	opts := Options{QuickHashes: idx, Now: future, beforeOpen: func(path string) {
		mu.Lock()
		opened = append(opened, path)
		mu.Unlock()
	}}
	res := scanT(t, root, opts)
	if res.Stats.Reused != 4 || res.Stats.Hashed != 1 {
		t.Errorf("stats %+v, want 4 reused, 1 hashed", res.Stats)
	}
	if e := mustFind(t, res, "/d/f1"); !bytes.Equal(e.Hash, sum256([]byte("CONTENT 1"))) {
		t.Errorf("/d/f1: change not seen: hash %x", e.Hash)
	}
	if e := mustFind(t, res, "/d/f2"); &e.Hash[0] != &idx["/d/f2"].Hash[0] {
		t.Errorf("/d/f2: the reused hash is a copy")
	}
	if !slices.Contains(opened, "/d/f1") || slices.Contains(opened, "/d/f2") {
		t.Errorf("opened %q, want /d/f1 and no unchanged file", opened)
	}
}

// rewriteKeepingMtime writes content (of the same size) to the file at p
// and puts its mtime back: only ctime shows the change.
func rewriteKeepingMtime(t *testing.T, p, content string) {
	t.Helper()
	st := lstat(t, p)
	time.Sleep(10 * time.Millisecond)
	write(t, p, content)
	mtime := time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
	must(t, os.Chtimes(p, mtime, mtime))
	if now := lstat(t, p); now.Mtim != st.Mtim || now.Size != st.Size || now.Ctim == st.Ctim {
		t.Fatalf("could not set up the change: %+v vs %+v", now, st)
	}
}

func TestTreeCancel(t *testing.T) {
	root := t.TempDir()
	for i := range 50 {
		write(t, filepath.Join(root, fmt.Sprintf("d%d", i), "f"), "x")
	}
	fds := openFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Tree(ctx, root, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before: err = %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	n := 0
	res, err := Tree(ctx, root, Options{Workers: 1, beforeOpen: func(string) {
		if n++; n == 10 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Errorf("cancelled during: err = %v", err)
	}
	if n > 12 {
		t.Errorf("went on for %d opens after the cancellation", n-10)
	}
	// The limit aborts the same way.
	if _, err := Tree(context.Background(), root, Options{MaxFiles: 10, Workers: 2}); !errors.Is(err, ErrLimit) {
		t.Errorf("limit: err = %v", err)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d fds open after aborted scans, %d before", got, fds)
	}
}

// TestTreeManyDirs scans a wider tree with several workers and checks every
// file once, in order, with no fd left open.
func TestTreeManyDirs(t *testing.T) {
	root := t.TempDir()
	want := map[string][]byte{}
	rng := rand.New(rand.NewPCG(3, 4))
	for d := range 40 {
		for f := range 30 {
			p := fmt.Sprintf("/d%02d/s%d/f%03d", d, d%3, f)
			data := bytes.Repeat(fmt.Appendf(nil, "%s ", p), 1+rng.IntN(3000))
			write(t, filepath.Join(root, p), string(data))
			want[p] = sum256(data)
		}
	}
	fds := openFDs(t)
	// One Root for every scan, two of them at once: a scan must not consume
	// the root's own descriptor (its directory offset).
	r, err := OpenRoot(root)
	must(t, err)
	defer r.Close()
	results := make([]*Result, 4)
	var wg sync.WaitGroup
	for i, workers := range []int{1, 3, 8, 2} {
		wg.Go(func() {
			res, err := r.Tree(t.Context(), Options{Workers: workers})
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
		if i%2 == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	for i, res := range results {
		if res == nil {
			continue
		}
		checkResult(t, res)
		files := 0
		for _, e := range res.Entries {
			if e.Type != attr.TypeRegular {
				continue
			}
			files++
			if !bytes.Equal(e.Hash, want[e.Path]) {
				t.Errorf("scan %d: %q hash %x", i, e.Path, e.Hash)
			}
		}
		if files != len(want) || res.Stats.Hashed != int64(len(want)) {
			t.Errorf("scan %d: %d files, stats %+v, want %d", i, files, res.Stats, len(want))
		}
	}
	must(t, r.Close())
	if got := openFDs(t); got != fds {
		t.Errorf("%d fds open after scans, %d before", got, fds)
	}
}

// TestComparePaths checks the fast comparison against attr.ComparePaths.
func TestComparePaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte{'a', 'b', '.', '-', 0x01, 0xff, '/'}
	gen := func() string {
		var b []byte
		for range 1 + rng.IntN(4) {
			b = append(b, '/')
			for range 1 + rng.IntN(3) {
				b = append(b, alphabet[rng.IntN(len(alphabet)-1)])
			}
		}
		return string(b)
	}
	fixed := []string{"/", "/a", "/a/b", "/a.b", "/a-b", "/ab", "/a/b/c", "/b", "/a\xff", "/a\x01"}
	var all []string
	all = append(all, fixed...)
	for range 2000 {
		all = append(all, gen())
	}
	for i, a := range all {
		for _, b := range all[max(0, i-50):min(len(all), i+50)] {
			if got, want := comparePaths(a, b), attr.ComparePaths(a, b); got != want {
				t.Fatalf("comparePaths(%q, %q) = %d, attr.ComparePaths = %d", a, b, got, want)
			}
		}
	}
	for _, a := range fixed {
		for _, b := range fixed {
			if got, want := comparePaths(a, b), attr.ComparePaths(a, b); got != want {
				t.Fatalf("comparePaths(%q, %q) = %d, attr.ComparePaths = %d", a, b, got, want)
			}
		}
	}
}

// countingIndex is a hashIndex that counts its questions.
type countingIndex struct {
	m     hashIndex
	asked atomic.Int64
}

func (c *countingIndex) Unchanged(path string, alg attr.Set, ino uint64, size, mtime, ctime int64) []byte {
	c.asked.Add(1)
	return c.m.Unchanged(path, alg, ino, size, mtime, ctime)
}

// TestQuickIndexStreams checks that a quick scan with an index its caller
// keeps anyway (the sidecar's watch.Index, which has no Ordered method)
// emits as it walks, holding a bounded window of the tree: the first entry
// is emitted before most of the files were asked about. (A walk that asked
// about every file before it emitted anything held every entry: the
// sidecar's quick check peaked at 46 MiB at 100,000 files.)
func TestQuickIndexStreams(t *testing.T) {
	const files = 8000 // more than the window: batchSlots * orderBatches per worker, 2 workers
	root := t.TempDir()
	for i := range files {
		write(t, filepath.Join(root, fmt.Sprintf("f%05d", i)), "x")
	}
	base := scanT(t, root, Options{Now: future})
	idx := &countingIndex{m: hashIndex{}}
	for i := range base.Entries {
		idx.m[base.Entries[i].Path] = &base.Entries[i]
	}
	var atFirst int64 = -1
	emitted := 0
	r, err := OpenRoot(root)
	must(t, err)
	defer r.Close()
	res, err := r.Tree(context.Background(), Options{QuickHashes: idx, Now: future, Workers: 2, Emit: func(*attr.Entry) {
		if emitted == 0 {
			atFirst = idx.asked.Load()
		}
		emitted++
	}})
	must(t, err)
	if res.Stats.Reused != files || emitted != len(base.Entries) {
		t.Fatalf("stats %+v, %d emitted of %d", res.Stats, emitted, len(base.Entries))
	}
	if window := int64(2 * orderBatches * batchSlots); atFirst < 0 || atFirst > window+batchSlots {
		t.Errorf("%d of %d files asked about before the first entry was emitted, want at most the window (%d)", atFirst, files, window+batchSlots)
	}
}
