package baseline

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// writeStreamed writes b to path with a Writer, entry by entry.
func writeStreamed(t *testing.T, path string, b *Baseline, key ed25519.PrivateKey) *Writer {
	t.Helper()
	return writeWith(t, path, b, key, func(w *Writer) error { return w.Begin(b.Header, len(b.Entries)) })
}

// writeWith is writeStreamed with begin to start the Writer.
func writeWith(t *testing.T, path string, b *Baseline, key ed25519.PrivateKey, begin func(*Writer) error) *Writer {
	t.Helper()
	w, err := CreateFile(path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := begin(w); err != nil {
		t.Fatal(err)
	}
	for i := range b.Entries {
		if err := w.Add(&b.Entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestWriterMatchesWrite checks that streaming entries through a Writer
// gives the file Write gives, byte for byte, signed or not, across group
// boundaries and with hashes both stored and compressed.
func TestWriterMatchesWrite(t *testing.T) {
	dir := t.TempDir()
	all := combinationEntries()
	combos := &Baseline{}
	for _, i := range sampleOf(t, len(all), 64, 16) {
		combos.Entries = append(combos.Entries, all[i])
	}
	combos.Sort()
	for name, b := range map[string]*Baseline{
		"sample":      sampleBaseline(),
		"empty":       {Header: Header{PolicyDigest: "p"}},
		"combination": combos,
		"synthetic":   syntheticBaseline(2*groupSize+500, false), // three groups, hashes stored
		"one-group":   syntheticBaseline(groupSize-1-groupSize/100, true),
	} {
		for _, key := range []ed25519.PrivateKey{nil, keyA()} {
			if key != nil && name == "combination" {
				continue // signing does not depend on the content
			}
			want := encodeFile(t, b, key)
			path := filepath.Join(dir, name+".pfb")
			w := writeStreamed(t, path, b, key)
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s (signed %v): the Writer's file (%d bytes) differs from Write's (%d bytes)", name, key != nil, len(got), len(want))
			}
			if w.Digest != b.Digest || w.Signed != (key != nil) || w.KeyID != b.KeyID || w.Version != Version ||
				w.Count() != len(b.Entries) {
				t.Errorf("%s: Writer says %+v, Write %+v", name, w, b)
			}
			assertNoTemp(t, dir)
		}
	}
}

// TestWriterRejects checks that a Writer refuses what Write refuses, and
// misuse, and that a refused file never replaces the old one.
func TestWriterRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.pfb")
	if err := WriteFile(path, sampleBaseline(), nil); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path)
	es := sampleEntries()
	bad := es[6]
	bad.Hash = []byte{1} // a sha256 hash of one byte
	tests := []struct {
		name  string
		count int
		add   []attr.Entry
		want  string
	}{
		{"out of order", 2, []attr.Entry{es[1], es[0]}, "out of order"},
		{"duplicate", 2, []attr.Entry{es[1], es[1]}, "duplicate"},
		{"invalid", 1, []attr.Entry{bad}, "hash is 1 bytes"},
		{"too many", 1, es[:2], "more entries than the 1 announced"},
		{"too few", 3, es[:2], "2 entries added, 3 announced"},
		{"negative count", -1, nil, "entries, outside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := CreateFile(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			err = w.Begin(Header{PolicyDigest: "p"}, tc.count)
			for i := range tc.add {
				if err != nil {
					break
				}
				err = w.Add(&tc.add[i])
			}
			if cerr := w.Close(); err == nil {
				err = cerr
			} else if cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Close after %v = %v, want the same error", err, cerr)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want %q naming the file", err, tc.want)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
				t.Error("a refused baseline replaced the old one")
			}
			assertNoTemp(t, dir)
		})
	}
	// Misuse.
	w, err := CreateFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&es[0]); err == nil || !strings.Contains(err.Error(), "before Begin") {
		t.Errorf("Add before Begin = %v", err)
	}
	assertNoTemp(t, dir)
	if _, err := CreateFile(filepath.Join(dir, "missing", "b.pfb"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CreateFile in a missing directory = %v", err)
	}
	if _, err := CreateFile(path, ed25519.PrivateKey{1, 2}); err == nil {
		t.Error("CreateFile accepted a short key")
	}
}

// TestWriterAbort checks that Abort before Close leaves no file and the
// old one untouched, and that Abort after Close does nothing.
func TestWriterAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.pfb")
	w, err := CreateFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Begin(Header{PolicyDigest: "p"}, 1); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("aborted baseline exists: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}
	assertNoTemp(t, dir)
	w = writeStreamed(t, path, sampleBaseline(), nil)
	w.Abort()
	if _, err := ReadFile(path, ReadOptions{}); err != nil {
		t.Errorf("Abort after Close broke the file: %v", err)
	}
}

// TestOpenFileChangedWhileRead changes the file between OpenFile, which
// authenticates it, and the decoding that reads it again: the Reader must
// end with ErrDigest, never io.EOF, whatever the change.
func TestOpenFileChangedWhileRead(t *testing.T) {
	b := syntheticBaseline(3*groupSize, false)
	data := encodeFile(t, b, keyA())
	other := encodeFile(t, syntheticBaseline(3*groupSize+1, false), keyA()) // also validly signed
	for name, change := range map[string]func(f *os.File) error{
		"byte flipped late": func(f *os.File) error {
			_, err := f.WriteAt([]byte{data[len(data)-100] ^ 1}, int64(len(data)-100))
			return err
		},
		// OpenFile decoded the start already; what it read was authentic.
		"byte flipped in the middle": func(f *os.File) error {
			_, err := f.WriteAt([]byte{data[len(data)/2] ^ 0x40}, int64(len(data)/2))
			return err
		},
		"truncated": func(f *os.File) error { return f.Truncate(int64(len(data) / 2)) },
		"replaced in place by another signed file": func(f *os.File) error {
			_, err := f.WriteAt(other, 0)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.pfb")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := OpenFile(path, ReadOptions{VerifyKey: pubOf(keyA())})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := change(f); err != nil {
				t.Fatal(err)
			}
			f.Close()
			_, err = stream(t, r)
			if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Next ended with %v, want ErrDigest naming the file", err)
			}
		})
	}
}

// TestRewind reads a file twice through one Reader, and checks that only
// a file Reader rewinds and that Close ends it.
func TestRewind(t *testing.T) {
	b := syntheticBaseline(2*groupSize+10, false)
	r := openWritten(t, b)
	// Part of a pass, then whole passes.
	for range 5 {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	for pass := range 2 {
		if err := r.Rewind(); err != nil {
			t.Fatal(err)
		}
		es, err := stream(t, r)
		if err != io.EOF {
			t.Fatalf("pass %d ended with %v", pass, err)
		}
		assertSameEntries(t, es, b.Entries)
		if r.Decoded() != len(b.Entries) || r.Count != len(b.Entries) {
			t.Errorf("pass %d: Decoded %d, Count %d", pass, r.Decoded(), r.Count)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err == nil || err == io.EOF {
		t.Errorf("Next after Close = %v", err)
	}
	if err := r.Rewind(); err == nil {
		t.Error("Rewind after Close succeeded")
	}
	m, err := Open(bytes.NewReader(encodeFile(t, b, nil)), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Rewind(); err == nil {
		t.Error("an in-memory Reader rewound")
	}
}

// openWritten writes b to a file and opens it; the test closes it.
func openWritten(t *testing.T, b *Baseline) *Reader {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.pfb")
	if err := WriteFile(path, b, nil); err != nil {
		t.Fatal(err)
	}
	r, err := OpenFile(path, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestReproducible checks that the same baseline, header included, gives
// the same file byte for byte, whether written whole or entry by entry,
// signed or not, and that the header reads back as it was given.
func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	for _, key := range []ed25519.PrivateKey{nil, keyA()} {
		first := encodeFile(t, imageBaseline(), key)
		if again := encodeFile(t, imageBaseline(), key); !bytes.Equal(first, again) {
			t.Fatal("the same baseline gave two different files")
		}
		path := filepath.Join(dir, "image.pfb")
		b := imageBaseline()
		w, err := CreateFile(path, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Begin(b.Header, len(b.Entries)); err != nil {
			t.Fatal(err)
		}
		for i := range b.Entries {
			if err := w.Add(&b.Entries[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(path); !bytes.Equal(data, first) {
			t.Fatal("Writer and Write gave different files")
		}
		r, err := OpenFile(path, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r.Header, b.Header) {
			t.Errorf("header read back %+v, want %+v", r.Header, b.Header)
		}
		r.Close()
	}
}

func TestImageMatches(t *testing.T) {
	im := testImage(1)
	other := testImage(2).Layers[1]
	for d, want := range map[string]bool{
		im.Manifest:                       true,
		im.Index:                          true,
		im.Config:                         true,
		"registry/app@" + im.Manifest:     true,
		"docker-pullable://x@" + im.Index: true,
		other:                             false,
		im.Layers[0]:                      false,
		"":                                false,
		"sha256:" + im.Manifest[7:20]:     false,
	} {
		if got := im.Matches(d); got != want {
			t.Errorf("Matches(%q) = %v, want %v", d, got, want)
		}
	}
	var none *Image
	if none.Matches(im.Manifest) {
		t.Error("a nil image matches")
	}
	// An image without an index must not match the empty digest.
	im.Index = ""
	if im.Matches("x@") {
		t.Error("an empty digest matches an image without an index")
	}
}
