package baseline

import (
	"bytes"
	"io"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// TestQuickCursor checks that a cursor over a fork answers what the index
// answers when asked in path order, nil for a path asked out of order,
// and that the Reader it forked from still reads every entry.
func TestQuickCursor(t *testing.T) {
	for name, b := range map[string]*Baseline{
		"sample":    sampleBaseline(),
		"synthetic": syntheticBaseline(2*groupSize+500, false),
	} {
		q, r := openQuick(t, b)
		if err := r.Rewind(); err != nil {
			t.Fatal(err)
		}
		fork, err := r.Fork()
		if err != nil {
			t.Fatal(err)
		}
		c := NewQuickCursor(fork)
		reused := 0
		for i := range b.Entries {
			e := &b.Entries[i]
			want := q.Unchanged(e.Path, e.HashAlg(), e.Inode, e.Size, e.Mtime, e.Ctime)
			got := c.Unchanged(e.Path, e.HashAlg(), e.Inode, e.Size, e.Mtime, e.Ctime)
			if !bytes.Equal(got, want) || len(got) != cap(got) {
				t.Fatalf("%s: %q: cursor %x, index %x", name, e.Path, got, want)
			}
			if got != nil {
				reused++
				if i > 0 {
					p := &b.Entries[i-1]
					if back := c.Unchanged(p.Path, p.HashAlg(), p.Inode, p.Size, p.Mtime, p.Ctime); back != nil {
						t.Fatalf("%s: %q asked out of order: %x", name, p.Path, back)
					}
				}
			}
		}
		if reused == 0 {
			t.Fatalf("%s: nothing reusable", name)
		}
		if err := c.Finish(); err != nil {
			t.Fatalf("%s: Finish: %v", name, err)
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
		if n != len(b.Entries) {
			t.Fatalf("%s: the forked-from Reader read %d entries, want %d", name, n, len(b.Entries))
		}
	}
}

// TestQuickCursorMissing checks a path the baseline does not have, and a
// cursor never asked: Finish still reads (and checks) the whole file.
func TestQuickCursorMissing(t *testing.T) {
	b := sampleBaseline()
	r := openWritten(t, b)
	fork, err := r.Fork()
	if err != nil {
		t.Fatal(err)
	}
	c := NewQuickCursor(fork)
	if got := c.Unchanged("/\xff\xff", attr.SHA256, 1, 1, 1, 1); got != nil {
		t.Errorf("a path past the end: %x", got)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	fork, err = r.Fork()
	if err != nil {
		t.Fatal(err)
	}
	if err := NewQuickCursor(fork).Finish(); err != nil {
		t.Fatal(err)
	}
	if fork.Decoded() != len(b.Entries) {
		t.Errorf("Finish decoded %d of %d entries", fork.Decoded(), len(b.Entries))
	}
}
