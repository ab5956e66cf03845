package baseline

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"weak"

	"github.com/podfim/podfim/internal/attr"
)

// stream reads every entry from r, copying each.
func stream(t testing.TB, r *Reader) ([]attr.Entry, error) {
	t.Helper()
	var es []attr.Entry
	for {
		e, err := r.Next()
		if err != nil {
			return es, err
		}
		es = append(es, e.Clone())
	}
}

func TestReaderStreams(t *testing.T) {
	for name, b := range map[string]*Baseline{
		"sample":    sampleBaseline(),
		"empty":     {},
		"synthetic": syntheticBaseline(2*groupSize+500, false), // three groups, hashes stored
	} {
		t.Run(name, func(t *testing.T) {
			data := encodeFile(t, b, keyA())
			r, err := Open(bytes.NewReader(data), ReadOptions{VerifyKey: pubOf(keyA())})
			if err != nil {
				t.Fatal(err)
			}
			if r.Version != Version || r.PolicyDigest != b.PolicyDigest || r.Count != len(b.Entries) || r.Digest != b.Digest ||
				!r.Signed || r.KeyID != b.KeyID || !r.PublicKey.Equal(b.PublicKey) {
				t.Errorf("Open says %+v", r)
			}
			es, err := stream(t, r)
			if err != io.EOF {
				t.Fatalf("Next ended with %v", err)
			}
			assertSameEntries(t, es, b.Entries)
			if r.Decoded() != len(b.Entries) {
				t.Errorf("Decoded = %d, want %d", r.Decoded(), len(b.Entries))
			}
			if e, err := r.Next(); e != nil || err != io.EOF {
				t.Errorf("Next after the end = %v, %v", e, err)
			}
			if r.src != nil || r.body != nil {
				t.Error("the Reader still holds the payload after the end")
			}
		})
	}
}

// TestReaderMidStream checks a file that is authentic but has a bad entry
// after several groups: Next returns the entries before it, then the error,
// every time, and never io.EOF.
func TestReaderMidStream(t *testing.T) {
	b := syntheticBaseline(3*groupSize, false)
	k := 2*groupSize + 500
	b.Entries[k], b.Entries[k+1] = b.Entries[k+1], b.Entries[k]
	data := assemble(gz(t, rawBody(t, b)), Version, 0, nil)
	r, err := Open(bytes.NewReader(data), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es, err := stream(t, r)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("err = %v, want the unsorted entry", err)
	}
	if len(es) != k+1 || r.Decoded() != k+1 {
		t.Errorf("%d entries before the error, Decoded %d, want %d", len(es), r.Decoded(), k+1)
	}
	if _, again := r.Next(); again != err {
		t.Errorf("Next after the error = %v, want it again", again)
	}
	if _, err := Read(bytes.NewReader(data), ReadOptions{}); !errors.Is(err, ErrFormat) {
		t.Errorf("Read err = %v", err)
	}
}

// TestReaderVectors checks that OpenFile and Next judge every vector as
// ReadFile does, and that a file whose fault is at its end (count, end
// marker, gzip checksum, trailing bytes) never gets to io.EOF.
func TestReaderVectors(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.pfb")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pfb")
		opts := ReadOptions{}
		if strings.HasPrefix(name, "err-signature-") || name == "ok-signed" {
			opts.VerifyKey = pubOf(keyA())
		}
		_, readErr := ReadFile(f, opts)
		r, err := OpenFile(f, opts)
		if err == nil {
			_, err = stream(t, r)
			if err == io.EOF {
				err = nil
				if r.Decoded() != r.Count {
					t.Errorf("%s: %d entries, %d announced", name, r.Decoded(), r.Count)
				}
			} else if !strings.HasPrefix(err.Error(), "failed to read baseline \""+f+"\": ") {
				t.Errorf("%s: Next's error does not name the file: %v", name, err)
			}
		}
		if (err == nil) != (readErr == nil) || err != nil && err.Error() != readErr.Error() {
			t.Errorf("%s: streaming: %v; ReadFile: %v", name, err, readErr)
		}
		if wantOK := strings.HasPrefix(name, "ok-"); wantOK != (err == nil) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestReadDoesNotPinPayload checks that neither a Baseline from Read nor a
// Reader that has ended keeps the payload reachable.
func TestReadDoesNotPinPayload(t *testing.T) {
	data := encodeFile(t, syntheticBaseline(2*groupSize, false), nil)
	r, err := Open(bytes.NewReader(data), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The payload is reachable through the bytes.Reader only, and the
	// decompressor and the hash buffer through the body.
	src, body := weak.Make(r.src.(*memSource)), weak.Make(r.body)
	b, err := r.readAll()
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	if src.Value() != nil || body.Value() != nil {
		t.Error("the Baseline or the Reader keeps the payload or the decoder reachable")
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(r)
}

// TestStreamMemory checks that streaming a baseline allocates fixed
// buffers and each entry's strings, not the decoded baseline, and from a
// file not even the payload.
func TestStreamMemory(t *testing.T) {
	data := encodeFile(t, syntheticBaseline(sweepFiles(), false), nil)
	path := filepath.Join(t.TempDir(), "b.pfb")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The decoder's buffer, one group's hashes, the decompressor and the
	// file's read buffer, with room to spare.
	const fixed = bodyBufSize + maxGroupHashes + 128<<10
	for _, fromFile := range []bool{false, true} {
		var ms0, ms1 runtimeMem
		ms0.read()
		var r *Reader
		var err error
		payload := uint64(len(data))
		if fromFile {
			r, err = OpenFile(path, ReadOptions{})
			payload = 0
		} else {
			r, err = Open(bytes.NewReader(data), ReadOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		ms1.read()
		r.Close()
		alloc := ms1.totalAlloc - ms0.totalAlloc
		perEntry := int64(alloc-payload-fixed) / int64(n)
		t.Logf("from file %v: %d entries, %d bytes allocated, %d per entry beyond the payload (%d) and %d fixed",
			fromFile, n, alloc, perEntry, payload, fixed)
		// A path string ("/d0123/f00045.dat") per entry; Read allocates ~270.
		if perEntry > 40 {
			t.Errorf("from file %v: streaming allocated %d bytes per entry beyond the payload and the buffers", fromFile, perEntry)
		}
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenFile(filepath.Join(dir, "missing"), ReadOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := OpenFile(dir, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	// A FIFO is refused at once, not waited on for a writer.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := OpenFile(fifo, ReadOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		// Unblock the open before failing, so the test ends.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("OpenFile of a FIFO blocked")
	}
	path := filepath.Join(dir, "b.pfb")
	if err := os.WriteFile(path, []byte("PODFIMBL"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(path, ReadOptions{}); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), path) {
		t.Errorf("truncated: %v", err)
	}
}
