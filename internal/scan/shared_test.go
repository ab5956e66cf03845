package scan

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestShared: a second tree made of the same inodes (hard links: what
// overlayfs shows of a shared image layer) is not read again, and gets the
// hashes the first scan computed; a file written since is read and hashed
// anew; a racy file is neither given nor taken; the copy a tree holds of
// its own (another inode) never takes another's hash.
func TestShared(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for i, name := range []string{"x", "y", "d/z"} {
		write(t, filepath.Join(a, name), string(rune('a'+i))+" content")
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(b, name)), 0o755))
		must(t, os.Link(filepath.Join(a, name), filepath.Join(b, name)))
	}
	write(t, filepath.Join(b, "own"), "a content") // x's bytes, another inode
	cache := NewHashCache(100)
	ra := scanT(t, a, Options{Now: future, Shared: cache})
	if ra.Stats.Hashed != 3 || ra.Stats.Shared != 0 {
		t.Fatalf("first tree: stats %+v, want 3 hashed", ra.Stats)
	}
	rb := scanT(t, b, Options{Now: future, Shared: cache})
	if rb.Stats.Hashed != 1 || rb.Stats.Shared != 3 {
		t.Fatalf("second tree: stats %+v, want 3 shared and its own file hashed", rb.Stats)
	}
	for _, p := range []string{"/x", "/y", "/d/z"} {
		if !bytes.Equal(mustFind(t, ra, p).Hash, mustFind(t, rb, p).Hash) || len(mustFind(t, rb, p).Hash) == 0 {
			t.Errorf("%s: hashes differ or are missing", p)
		}
	}
	if !bytes.Equal(mustFind(t, rb, "/own").Hash, sum256([]byte("a content"))) {
		t.Error("/own: wrong hash")
	}

	// Written since (a new ctime): read and hashed, in either tree.
	time.Sleep(10 * time.Millisecond) // a ctime tick apart from the first write
	write(t, filepath.Join(b, "y"), "tampered")
	rb = scanT(t, b, Options{Now: future, Shared: cache})
	if e := mustFind(t, rb, "/y"); !bytes.Equal(e.Hash, sum256([]byte("tampered"))) {
		t.Errorf("/y after a write: hash %x, want that of the new content", e.Hash)
	}
	if rb.Stats.Hashed != 1 || rb.Stats.Shared != 3 {
		t.Errorf("after a write: stats %+v, want /y hashed and the rest shared", rb.Stats)
	}

	// Racy (a scan that starts now, right after the files were made):
	// never taken from the cache, nor given to it.
	r := scanT(t, b, Options{Shared: cache})
	if e := mustFind(t, r, "/y"); !e.Racy {
		t.Fatal("/y is not racy right after its write")
	}
	if r.Stats.Shared != 0 || r.Stats.Hashed != 4 {
		t.Errorf("a scan of racy files: stats %+v, want all 4 hashed", r.Stats)
	}
	racy := NewHashCache(100)
	scanT(t, b, Options{Shared: racy})
	if _, _, held := racy.Reset(); held != 0 {
		t.Errorf("the cache holds %d hashes of racy files", held)
	}

	// Reset drops them all; a full cache takes no more.
	if hits, _, held := cache.Reset(); hits != 6 || held != 5 {
		t.Errorf("Reset: %d hits, %d held; want 6 and 5", hits, held)
	}
	small := NewHashCache(1)
	scanT(t, a, Options{Now: future, Shared: small})
	if _, _, held := small.Reset(); held != 1 {
		t.Errorf("a cache of 1 holds %d", held)
	}
}
