package baseline

import (
	"bytes"
	"io"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

func openQuick(t *testing.T, b *Baseline) (*QuickIndex, *Reader) {
	t.Helper()
	r := openWritten(t, b)
	q, err := NewQuickIndex(r)
	if err != nil {
		t.Fatal(err)
	}
	return q, r
}

// TestQuickIndex checks that the index answers with the recorded hash
// exactly when every field quick mode compares matches, and only for
// entries quick mode may reuse.
func TestQuickIndex(t *testing.T) {
	b := sampleBaseline()
	q, _ := openQuick(t, b)
	ask := func(e *attr.Entry) []byte {
		return q.Unchanged(e.Path, e.HashAlg(), e.Inode, e.Size, e.Mtime, e.Ctime)
	}
	reusable := 0
	for i := range b.Entries {
		e := &b.Entries[i]
		want := !e.Racy && e.Type == attr.TypeRegular && len(e.Hash) > 0 && e.Attrs.Has(attr.Size|attr.Mtime|attr.Ctime|attr.Inode)
		got := ask(e)
		if want != (got != nil) || (want && !bytes.Equal(got, e.Hash)) || len(got) != cap(got) {
			t.Errorf("%q: Unchanged = %x (cap %d), want reusable %v", e.Path, got, cap(got), want)
		}
		if !want {
			continue
		}
		reusable++
		// Any one field off: no hash.
		for name, change := range map[string]func(c *attr.Entry){
			"path":  func(c *attr.Entry) { c.Path += "x" },
			"inode": func(c *attr.Entry) { c.Inode++ },
			"size":  func(c *attr.Entry) { c.Size ^= 1 },
			"mtime": func(c *attr.Entry) { c.Mtime++ },
			"ctime": func(c *attr.Entry) { c.Ctime-- },
			"alg": func(c *attr.Entry) {
				other := attr.SHA256
				if c.HashAlg() == attr.SHA256 {
					other = attr.BLAKE3
				}
				c.Attrs = c.Attrs&^attr.Hashes | other
			},
		} {
			c := *e
			change(&c)
			if c.HashAlg() == e.HashAlg() && name == "alg" {
				t.Fatalf("%q: the alg change changed nothing", e.Path)
			}
			if h := ask(&c); h != nil {
				t.Errorf("%q with another %s: Unchanged = %x", e.Path, name, h)
			}
		}
	}
	if q.Len() != reusable || reusable < 2 {
		t.Errorf("Len = %d, want %d (> 1)", q.Len(), reusable)
	}
	if h := q.Unchanged("/nowhere", attr.SHA256, 0, 0, 0, 0); h != nil {
		t.Errorf("unknown path: %x", h)
	}
	empty, _ := openQuick(t, &Baseline{})
	if empty.Len() != 0 || empty.Unchanged("/", attr.SHA256, 0, 0, 0, 0) != nil {
		t.Error("an empty index answered")
	}
}

// TestQuickIndexLarge checks every file of a large baseline is found, with
// its own hash, and that the index leaves the Reader at its end.
func TestQuickIndexLarge(t *testing.T) {
	b := syntheticBaseline(3*groupSize+7, false)
	for i := range b.Entries {
		if len(b.Entries[i].Hash) > 0 {
			// Distinct hashes, so that a wrong one shows.
			copy(b.Entries[i].Hash, []byte{byte(i), byte(i >> 8), byte(i >> 16), 0xEE})
		}
	}
	q, r := openQuick(t, b)
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Reader after the index: %v", err)
	}
	n := 0
	for i := range b.Entries {
		e := &b.Entries[i]
		if len(e.Hash) == 0 {
			continue
		}
		n++
		if h := q.Unchanged(e.Path, e.HashAlg(), e.Inode, e.Size, e.Mtime, e.Ctime); !bytes.Equal(h, e.Hash) {
			t.Fatalf("%q: Unchanged = %x, want %x", e.Path, h, e.Hash)
		}
	}
	if q.Len() != n {
		t.Errorf("Len = %d, want %d", q.Len(), n)
	}
}

// TestQuickIndexBadBaseline checks that a baseline that fails mid-way
// gives no index.
func TestQuickIndexBadBaseline(t *testing.T) {
	b := syntheticBaseline(3*groupSize, false)
	k := 2*groupSize + 500
	b.Entries[k], b.Entries[k+1] = b.Entries[k+1], b.Entries[k]
	var buf bytes.Buffer
	hashes := func(p []byte) error { _, err := buf.Write(p); return err }
	if err := encodeBody(&buf, hashes, b); err != nil {
		t.Fatal(err)
	}
	r, err := Open(bytes.NewReader(assemble(gz(t, buf.Bytes()), Version, 0, nil)), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q, err := NewQuickIndex(r); q != nil || err == nil {
		t.Errorf("NewQuickIndex of a bad baseline = %v, %v", q, err)
	}
}

// TestUniqueKeys checks that colliding keys are dropped, all of them.
func TestUniqueKeys(t *testing.T) {
	recs := []quickRec{{key: 1}, {key: 2, ino: 1}, {key: 2, ino: 2}, {key: 3}, {key: 4}, {key: 4}, {key: 4}, {key: 5}}
	got := uniqueKeys(recs)
	var keys []uint64
	for _, r := range got {
		keys = append(keys, r.key)
	}
	if len(keys) != 3 || keys[0] != 1 || keys[1] != 3 || keys[2] != 5 {
		t.Errorf("uniqueKeys kept %v, want [1 3 5]", keys)
	}
}
