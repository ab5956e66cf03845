package watch

import (
	"io"
	"reflect"
	"strconv"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// full returns an entry with every field set (but Prefix, which is a
// scan's and never stored), so that a field added to attr.Entry and not to
// the index fails TestIndexRoundTrip.
func full(t *testing.T, path string, i int) attr.Entry {
	t.Helper()
	e := attr.Entry{Path: path}
	v := reflect.ValueOf(&e).Elem()
	for j := range v.NumField() {
		f, name := v.Field(j), v.Type().Field(j).Name
		switch name {
		case "Path", "Prefix":
			continue
		case "Xattrs":
			e.Xattrs = []attr.Xattr{{Name: "user.a" + strconv.Itoa(i), Value: []byte{1, 2}}, {Name: "user.b", Value: []byte("v")}}
			continue
		case "Hash":
			e.Hash = []byte("0123456789abcdef0123456789abcdef")
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("target" + strconv.Itoa(i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int, reflect.Int64, reflect.Int32:
			f.SetInt(-int64(1000 + i))
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(uint64(7 + i))
		default:
			t.Fatalf("attr.Entry.%s (%s): the index test does not know it; does the index store it?", name, f.Kind())
		}
	}
	return e
}

// Every field of every entry comes back from Lookup and Cursor as it was
// added; paths not added are not found; entries out of order are refused.
func TestIndexRoundTrip(t *testing.T) {
	paths := []string{"/", "/a", "/a/b", "/a.b", "/z"}
	var entries []attr.Entry
	for i, p := range paths {
		entries = append(entries, full(t, p, i))
	}
	entries[1].Xattrs, entries[1].Hash = nil, nil
	x, err := IndexOf(entries)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(paths) {
		t.Errorf("Len %d", x.Len())
	}
	for i := range entries {
		got, ok := x.Lookup(entries[i].Path)
		if !ok || !reflect.DeepEqual(*got, entries[i]) {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v", entries[i].Path, got, ok, entries[i])
		}
	}
	for _, p := range []string{"/b", "", "/a/", "/a/b/c"} {
		if _, ok := x.Lookup(p); ok {
			t.Errorf("Lookup(%q) found an entry", p)
		}
	}
	next := x.Cursor()
	for i := range entries {
		got, err := next()
		if err != nil || !reflect.DeepEqual(got.Clone(), entries[i].Clone()) {
			t.Errorf("entry %d from the cursor: %+v, %v; want %+v", i, got, err, entries[i])
		}
	}
	if _, err := next(); err != io.EOF {
		t.Errorf("after the last entry: %v, want io.EOF", err)
	}
	b := NewIndexBuilder(0)
	b.Add(&entries[2])
	if err := b.Add(&entries[1]); err == nil {
		t.Error("an entry out of order was accepted")
	}
}

// Unchanged reuses a hash only under quick mode's rules.
func TestIndexUnchanged(t *testing.T) {
	e := attr.Entry{Path: "/f", Type: attr.TypeRegular, Attrs: attr.Size | attr.Mtime | attr.Ctime | attr.Inode | attr.SHA256,
		Size: 3, Inode: 9, Mtime: 100, Ctime: 200, Hash: []byte("h")}
	racy := e
	racy.Path, racy.Racy = "/r", true
	x, err := IndexOf([]attr.Entry{e, racy})
	if err != nil {
		t.Fatal(err)
	}
	if h := x.Unchanged("/f", attr.SHA256, 9, 3, 100, 200); string(h) != "h" {
		t.Errorf("unchanged file: %q", h)
	}
	for name, h := range map[string][]byte{
		"other inode": x.Unchanged("/f", attr.SHA256, 8, 3, 100, 200),
		"other ctime": x.Unchanged("/f", attr.SHA256, 9, 3, 100, 201),
		"other alg":   x.Unchanged("/f", attr.SHA512, 9, 3, 100, 200),
		"racy":        x.Unchanged("/r", attr.SHA256, 9, 3, 100, 200),
		"absent":      x.Unchanged("/g", attr.SHA256, 9, 3, 100, 200),
	} {
		if h != nil {
			t.Errorf("%s: hash reused", name)
		}
	}
}

// The index holds a tree in a fraction of the memory of its decoded
// entries: at most 120 bytes a hashed file with a 40-byte path and a
// 32-byte hash here, lookup table included (a decoded attr.Entry alone is
// 160 bytes, plus its path and hash: 232).
func TestIndexCompact(t *testing.T) {
	const n = 10000
	entries := make([]attr.Entry, n)
	for i := range entries {
		entries[i] = attr.Entry{Path: "/srv/www/static/assets/" + strconv.Itoa(1_000_000_000_000+i) + ".js", Type: attr.TypeRegular,
			Attrs: attr.All, Mode: 0o644, Size: 4096, Inode: uint64(1<<20 + i), Nlink: 1, Mtime: 1_700_000_000_000_000_000, Ctime: 1_700_000_000_000_000_000,
			Hash: make([]byte, 32)}
	}
	x, err := IndexOf(entries)
	if err != nil {
		t.Fatal(err)
	}
	if per := x.Bytes() / n; per > 120 {
		t.Errorf("%d bytes an entry, want at most 120", per)
	}
}

// Records spread over several chunks are found and streamed all the same.
func TestIndexChunks(t *testing.T) {
	big := make([]byte, 200<<10)
	var entries []attr.Entry
	for i := range 25 { // 5 MB: three chunks
		entries = append(entries, attr.Entry{Path: "/f" + strconv.Itoa(100+i), Attrs: attr.Xattrs,
			Xattrs: []attr.Xattr{{Name: "user.big", Value: big}}})
	}
	x, err := IndexOf(entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(x.chunks) < 3 {
		t.Fatalf("%d chunks", len(x.chunks))
	}
	n := 0
	x.Each(func(e *attr.Entry) bool {
		if e.Path != entries[n].Path || len(e.Xattrs) != 1 || len(e.Xattrs[0].Value) != len(big) {
			t.Errorf("entry %d: %q", n, e.Path)
		}
		n++
		return true
	})
	if n != len(entries) {
		t.Errorf("%d entries streamed, want %d", n, len(entries))
	}
	if e, ok := x.Lookup("/f124"); !ok || len(e.Xattrs[0].Value) != len(big) {
		t.Error("the last entry is not found")
	}
}
