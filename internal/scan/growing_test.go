package scan

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// TestGrowingPrefix (issue 11, item 10): given the baseline, a Growing file
// that grew gets the hash of its first baseline-size bytes, taken in the
// same pass as the whole file's (GrowingFull) or alone, reading nothing
// past it; a file that did not grow, or is not Growing, gets none.
func TestGrowingPrefix(t *testing.T) {
	root := t.TempDir()
	old := strings.Repeat("line of the log\n", 40000) // 640,000 bytes: more than one read buffer
	cur := old + "appended\n"
	write(t, filepath.Join(root, "app.log"), cur)
	write(t, filepath.Join(root, "same.log"), "unchanged\n")
	write(t, filepath.Join(root, "conf"), cur)
	growing := attr.All | attr.Growing
	prior := priorMap{
		"/app.log":  {Path: "/app.log", Attrs: growing, Type: attr.TypeRegular, Size: int64(len(old)), Hash: sum256([]byte(old))},
		"/same.log": {Path: "/same.log", Attrs: growing, Type: attr.TypeRegular, Size: 10, Hash: sum256([]byte("unchanged\n"))},
		"/conf":     {Path: "/conf", Attrs: attr.All, Type: attr.TypeRegular, Size: int64(len(old)), Hash: sum256([]byte(old))},
	}
	m := matcherFunc(func(p string) (attr.Set, bool) {
		if strings.HasSuffix(p, ".log") {
			return growing, false
		}
		return attr.All, false
	})
	for _, full := range []bool{true, false} {
		res := scanT(t, root, Options{Matcher: m, Growing: prior, GrowingFull: full, Now: future})
		e := mustFind(t, res, "/app.log")
		if e.Prefix == nil || e.Prefix.Size != int64(len(old)) || !bytes.Equal(e.Prefix.Hash, sum256([]byte(old))) {
			t.Errorf("full=%v: /app.log prefix %+v", full, e.Prefix)
		}
		if full != (len(e.Hash) > 0) || full && !bytes.Equal(e.Hash, sum256([]byte(cur))) {
			t.Errorf("full=%v: /app.log hash %x", full, e.Hash)
		}
		if want := int64(2*len(cur) + 10); !full {
			if want = int64(len(old) + len(cur) + 10); res.Stats.HashedBytes != want {
				t.Errorf("prefix only: %d bytes hashed, want %d (nothing past the prefix)", res.Stats.HashedBytes, want)
			}
		} else if res.Stats.HashedBytes != want {
			t.Errorf("full: %d bytes hashed, want %d (one pass)", res.Stats.HashedBytes, want)
		}
		if e := mustFind(t, res, "/same.log"); e.Prefix != nil || !bytes.Equal(e.Hash, sum256([]byte("unchanged\n"))) {
			t.Errorf("full=%v: /same.log %+v", full, e)
		}
		if e := mustFind(t, res, "/conf"); e.Prefix != nil || len(e.Hash) == 0 {
			t.Errorf("full=%v: /conf (not Growing) %+v", full, e)
		}
	}

	// Root.Entry, as the sidecar uses per event: the same prefix.
	r, err := OpenRoot(root)
	must(t, err)
	defer r.Close()
	e, err := r.EntryWith("/app.log", growing, Options{Growing: prior, MaxFileBytes: int64(len(old))})
	if err != nil || e.Prefix == nil || !bytes.Equal(e.Prefix.Hash, sum256([]byte(old))) || e.Hash != nil {
		t.Errorf("Entry: %+v, %v; want the prefix only, within MaxFileBytes", e, err)
	}
	// Rewriting an earlier line changes the prefix.
	must(t, os.WriteFile(filepath.Join(root, "app.log"), []byte("LINE"+cur[4:]+"xx"), 0o644))
	e, err = r.EntryWith("/app.log", growing, Options{Growing: prior})
	if err != nil || e.Prefix == nil || bytes.Equal(e.Prefix.Hash, sum256([]byte(old))) {
		t.Errorf("Entry after a rewrite: %+v, %v; want another prefix hash", e.Prefix, err)
	}
}
