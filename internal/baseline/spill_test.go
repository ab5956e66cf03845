package baseline

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

// TestWriterUncounted checks that a Writer begun with BeginUncounted writes the
// file Write writes, byte for byte (the spilled body replayed after the
// count), leaves no temporary file, and still refuses what it must.
func TestWriterUncounted(t *testing.T) {
	dir := t.TempDir()
	for name, b := range map[string]*Baseline{
		"sample":    sampleBaseline(),
		"empty":     {Header: Header{PolicyDigest: "p"}},
		"synthetic": syntheticBaseline(2*groupSize+500, false), // three groups, hashes stored
		"one-group": syntheticBaseline(groupSize-1-groupSize/100, true),
	} {
		for _, key := range []ed25519.PrivateKey{nil, keyA()} {
			want := encodeFile(t, b, key)
			path := filepath.Join(dir, name+".pfb")
			w := writeWith(t, path, b, key, func(w *Writer) error { return w.BeginUncounted(b.Header) })
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s (signed %v): the file (%d bytes) differs from Write's (%d bytes)", name, key != nil, len(got), len(want))
			}
			if w.Digest != b.Digest || w.Count() != len(b.Entries) {
				t.Errorf("%s: Writer says %+v, Write %+v", name, w, b)
			}
			assertNoTemp(t, dir)
		}
	}
	// Out of order is refused, and the old file stays.
	b := sampleBaseline()
	path := filepath.Join(dir, "sample.pfb")
	before, _ := os.ReadFile(path)
	w, err := CreateFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.BeginUncounted(b.Header); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&b.Entries[1]); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&b.Entries[0]); err == nil {
		t.Fatal("an entry out of order was accepted")
	}
	if w.Close() == nil {
		t.Fatal("Close after a refused entry succeeded")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("a refused file replaced the old one")
	}
	assertNoTemp(t, dir)
}
