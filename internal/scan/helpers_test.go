package scan

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// scanT runs Tree with a deadline: a scan that blocks (on a FIFO, say) fails
// the test instead of hanging it.
func scanT(t *testing.T, root string, opts Options) *Result {
	t.Helper()
	res, err := scanErr(t, root, opts)
	if err != nil {
		t.Fatalf("Tree(%q): %v", root, err)
	}
	return res
}

func scanErr(t *testing.T, root string, opts Options) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type out struct {
		res *Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := Tree(ctx, root, opts)
		ch <- out{res, err}
	}()
	select {
	case o := <-ch:
		if o.err == nil {
			checkResult(t, o.res)
		}
		return o.res, o.err
	case <-time.After(30 * time.Second):
		t.Fatalf("Tree(%q) hung (opened a FIFO?)", root)
		return nil, nil
	}
}

// checkResult checks invariants every result must meet.
func checkResult(t *testing.T, res *Result) {
	t.Helper()
	if !slices.IsSortedFunc(res.Entries, func(a, b attr.Entry) int { return attr.ComparePaths(a.Path, b.Path) }) {
		t.Errorf("entries are not sorted with attr.ComparePaths")
	}
	for i := 1; i < len(res.Entries); i++ {
		if res.Entries[i].Path == res.Entries[i-1].Path {
			t.Errorf("duplicate entry %q", res.Entries[i].Path)
		}
	}
	if res.Stats.Entries != int64(len(res.Entries)) {
		t.Errorf("Stats.Entries = %d, have %d entries", res.Stats.Entries, len(res.Entries))
	}
	var dirs int64
	for _, e := range res.Entries {
		if e.Type == attr.TypeDir {
			dirs++
		}
		if e.Type != attr.TypeRegular && e.Hash != nil {
			t.Errorf("%q (%v) has a hash", e.Path, e.Type)
		}
	}
	if res.Stats.Dirs != dirs {
		t.Errorf("Stats.Dirs = %d, have %d dirs", res.Stats.Dirs, dirs)
	}
}

func find(res *Result, path string) *attr.Entry {
	for i := range res.Entries {
		if res.Entries[i].Path == path {
			return &res.Entries[i]
		}
	}
	return nil
}

func mustFind(t *testing.T, res *Result, path string) *attr.Entry {
	t.Helper()
	e := find(res, path)
	if e == nil {
		t.Fatalf("no entry for %q; have %v", path, paths(res))
	}
	return e
}

func paths(res *Result) []string {
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.Path)
	}
	return out
}

func hasWarning(res *Result, path, op string) bool {
	for _, w := range res.Warnings {
		if w.Path == path && w.Op == op {
			return true
		}
	}
	return false
}

func sum256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func write(t *testing.T, path string, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// check is must for hooks, which run on a worker goroutine where t.Fatal
// must not be called.
func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}

func writeCheck(t *testing.T, path string, data string) {
	t.Helper()
	check(t, os.MkdirAll(filepath.Dir(path), 0o755))
	check(t, os.WriteFile(path, []byte(data), 0o644))
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}

// lstat returns the raw stat of path.
func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(path, &st))
	return st
}

// future makes a scan's start an hour ahead, so that files written by the
// test are not racy.
func future() time.Time { return time.Now().Add(time.Hour) }
