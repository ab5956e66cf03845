package compare

import (
	"io"
	"slices"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

func file(path string, mod func(*attr.Entry)) attr.Entry {
	e := attr.Entry{
		Path: path, Attrs: attr.All, Type: attr.TypeRegular, Mode: 0o644, UID: 0, GID: 0,
		Size: 14, Inode: 42, Nlink: 1, Mtime: 1_700_000_000_000_000_001, Ctime: 1_700_000_000_000_000_002,
		Hash: []byte("0123456789abcdef0123456789abcdef"),
	}
	if mod != nil {
		mod(&e)
	}
	return e
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*attr.Entry)
		want []string
	}{
		{"identical", nil, nil},
		{"content", func(e *attr.Entry) { e.Hash = []byte("XXXX456789abcdef0123456789abcdef") }, []string{"sha256"}},
		{"sub-second mtime", func(e *attr.Entry) { e.Mtime++ }, []string{"mtime"}},
		{"mode setuid", func(e *attr.Entry) { e.Mode |= 0o4000 }, []string{"mode"}},
		{"owner", func(e *attr.Entry) { e.UID, e.GID = 1000, 1000 }, []string{"uid", "gid"}},
		{"inode", func(e *attr.Entry) { e.Inode++; e.Ctime++ }, []string{"inode", "ctime"}},
		{"nlink", func(e *attr.Entry) { e.Nlink = 2 }, []string{"nlink"}},
		{"size", func(e *attr.Entry) { e.Size = 15 }, []string{"size"}},
		{"type", func(e *attr.Entry) { e.Type = attr.TypeSymlink; e.Target = "/x"; e.Hash = nil }, []string{"type", "target", "sha256"}},
		{"device number", func(e *attr.Entry) { e.Type = attr.TypeChar; e.Hash = nil; e.Rdev = 7 }, []string{"type", "sha256"}},
		{"acl", func(e *attr.Entry) { e.Xattrs = []attr.Xattr{{Name: "system.posix_acl_access", Value: []byte{2}}} }, []string{"acl"}},
		{"caps and user", func(e *attr.Entry) {
			e.Xattrs = []attr.Xattr{{Name: "security.capability", Value: []byte{1}}, {Name: "user.a", Value: nil}}
		}, []string{"caps", "xattrs"}},
		{"not collected now", func(e *attr.Entry) { e.Attrs &^= attr.Mtime; e.Mtime = 0 }, nil},
		{"other hash algorithm is not comparable", func(e *attr.Entry) {
			e.Attrs = e.Attrs&^attr.SHA256 | attr.SHA512
			e.Hash = make([]byte, 64)
		}, nil},
		{"hash missing now", func(e *attr.Entry) { e.Hash = nil }, []string{"sha256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := file("/f", nil)
			n := file("/f", tt.mod)
			if got := Diff(&o, &n); !slices.Equal(got, tt.want) {
				t.Errorf("Diff = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDiffGrowing(t *testing.T) {
	grow := func(e *attr.Entry) { e.Attrs |= attr.Growing }
	o := file("/log", grow)
	tests := []struct {
		name string
		mod  func(*attr.Entry)
		want []string
	}{
		{"appended", func(e *attr.Entry) { grow(e); e.Size = 100; e.Mtime++; e.Ctime++; e.Hash = []byte("y") }, nil},
		{"truncated", func(e *attr.Entry) { grow(e); e.Size = 1; e.Mtime++; e.Hash = []byte("y") }, []string{"size", "mtime", "sha256"}},
		{"rewritten in place", func(e *attr.Entry) { grow(e); e.Hash = []byte("y") }, []string{"sha256"}},
		{"grew and chmod", func(e *attr.Entry) { grow(e); e.Size = 100; e.Mode = 0o666 }, []string{"mode"}},
		{"grew and replaced", func(e *attr.Entry) { grow(e); e.Size = 100; e.Inode = 9 }, []string{"inode"}},
		// Issue 11, item 10: growing means append-only. The scan hashes the
		// baseline's 14 bytes of the grown file (Prefix).
		{"appended, prefix intact", func(e *attr.Entry) {
			grow(e)
			e.Size, e.Hash, e.Prefix = 16, []byte("y"), &attr.Prefix{Size: 14, Hash: o.Hash}
		}, nil},
		{"earlier line rewritten, 2 bytes appended", func(e *attr.Entry) {
			grow(e)
			e.Size, e.Mtime, e.Hash = 16, e.Mtime+1, []byte("y")
			e.Prefix = &attr.Prefix{Size: 14, Hash: []byte("XXXX456789abcdef0123456789abcdef")}
		}, []string{"sha256"}},
		{"prefix of another size is not compared", func(e *attr.Entry) {
			grow(e)
			e.Size, e.Prefix = 16, &attr.Prefix{Size: 13, Hash: []byte("other")}
		}, nil},
		{"prefix of another algorithm is not compared", func(e *attr.Entry) {
			grow(e)
			e.Attrs = e.Attrs&^attr.SHA256 | attr.SHA512
			e.Size, e.Prefix = 16, &attr.Prefix{Size: 14, Hash: make([]byte, 64)}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := file("/log", tt.mod)
			if got := Diff(&o, &n); !slices.Equal(got, tt.want) {
				t.Errorf("Diff = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEntries(t *testing.T) {
	old := []attr.Entry{file("/", nil), file("/a", nil), file("/a/b", nil), file("/c", nil)}
	cur := []attr.Entry{file("/", nil), file("/a", nil), file("/a/a", nil), file("/a.x", nil), file("/c", func(e *attr.Entry) { e.Mode = 0o600 })}
	r := Entries(old, cur, 0)
	if got, want := r.Paths(), []string{"/a/a", "/a/b", "/a.x", "/c"}; !slices.Equal(got, want) {
		t.Fatalf("paths = %q, want %q", got, want)
	}
	kinds := []Kind{Added, Removed, Added, Changed}
	for i, f := range r.Findings {
		if f.Kind != kinds[i] {
			t.Errorf("%s: kind %s, want %s", f.Path, f.Kind, kinds[i])
		}
	}
	if r.Counts != (Counts{Added: 2, Removed: 1, Changed: 1}) || r.Counts.ExitCode() != 7 {
		t.Errorf("counts = %+v exit %d", r.Counts, r.Counts.ExitCode())
	}

	r = Entries(old, cur, 2)
	if len(r.Findings) != 2 || r.Omitted != 2 || r.Counts.Total() != 4 {
		t.Errorf("limited: %d listed, %d omitted, %d total", len(r.Findings), r.Omitted, r.Counts.Total())
	}
	if r := Entries(old, old, 0); r.Counts.Total() != 0 || r.Counts.ExitCode() != 0 {
		t.Errorf("self-compare found %+v", r.Counts)
	}
	if r := Entries(nil, cur, 0); r.Counts.Added != len(cur) || r.Counts.ExitCode() != 1 {
		t.Errorf("empty baseline: %+v", r.Counts)
	}
	if r := Entries(old, nil, 0); r.Counts.Removed != len(old) || r.Counts.ExitCode() != 2 {
		t.Errorf("empty scan: %+v", r.Counts)
	}
}

// TestDiffOnly checks that a baseline's restriction (an image baseline's
// attr.ImageStable) keeps inode, nlink and ctime out of the findings and
// nothing else.
func TestDiffOnly(t *testing.T) {
	o := attr.Entry{Path: "/a", Attrs: attr.All, Type: attr.TypeRegular, Mode: 0o644, Inode: 1, Nlink: 1, Ctime: 1, Mtime: 1, Hash: make([]byte, 32)}
	n := o
	n.Inode, n.Nlink, n.Ctime = 2, 2, 2
	if got := DiffOnly(&o, &n, attr.ImageStable); got != nil {
		t.Errorf("image-stable diff of inode/nlink/ctime changes = %v, want none", got)
	}
	if got := Diff(&o, &n); !slices.Equal(got, []string{"inode", "nlink", "ctime"}) {
		t.Errorf("unrestricted diff = %v", got)
	}
	n.Mode, n.Mtime = 0o755, 2
	if got := DiffOnly(&o, &n, attr.ImageStable); !slices.Equal(got, []string{"mode", "mtime"}) {
		t.Errorf("image-stable diff = %v, want [mode mtime]", got)
	}
	n = o
	n.Type = attr.TypeDir
	if got := DiffOnly(&o, &n, attr.Mode); !slices.Equal(got, []string{"type"}) {
		t.Errorf("type must always be compared: %v", got)
	}
	// The Merger applies it.
	done := false
	next := func() (*attr.Entry, error) {
		if done {
			return nil, io.EOF
		}
		done = true
		return &o, nil
	}
	cur := o
	cur.Inode = 9
	m := NewMerger(next, 0)
	m.Only(attr.ImageStable)
	m.Add(&cur)
	if r, err := m.Finish(); err != nil || r.Counts.Total() != 0 {
		t.Errorf("Merger.Only: %v, %+v", err, r)
	}
}
