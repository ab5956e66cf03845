package attr

import (
	"reflect"
	"slices"
	"testing"
)

func TestComparePathsMatchesWalkOrder(t *testing.T) {
	// The order a depth-first walk with sorted entries produces.
	want := []string{"/", "/a", "/a/b", "/a/b/c", "/a/c", "/a.b", "/a0", "/b", "/b/\xff"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, ComparePaths)
	if !slices.Equal(got, want) {
		t.Fatalf("sorted = %q, want %q", got, want)
	}
	for _, p := range want {
		if ComparePaths(p, p) != 0 {
			t.Errorf("ComparePaths(%q, %q) != 0", p, p)
		}
	}
}

func TestSetNamesRoundTrip(t *testing.T) {
	for _, n := range AllNames() {
		s, err := Parse(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != n {
			t.Errorf("Parse(%q).String() = %q", n, got)
		}
	}
	if _, err := Parse("atime"); err == nil {
		t.Error("atime must not be an attribute")
	}
	if Set(1 << 30).Valid() {
		t.Error("undefined bit reported valid")
	}
	if got := (Mode | SHA256 | Type).String(); got != "type+mode+sha256" {
		t.Errorf("String = %q", got)
	}
}

func TestXattrLabel(t *testing.T) {
	for name, want := range map[string]string{
		"system.posix_acl_access":  "acl",
		"system.posix_acl_default": "acl",
		"security.capability":      "caps",
		"security.selinux":         "selinux",
		"user.foo":                 "xattrs",
	} {
		if got := XattrLabel(name); got != want {
			t.Errorf("XattrLabel(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestClone(t *testing.T) {
	e := Entry{Path: "/f", Attrs: All, Type: TypeRegular, Size: 3, Hash: []byte{1, 2, 3},
		Xattrs: []Xattr{{Name: "user.a", Value: []byte("v")}, {Name: "user.b"}}}
	c := e.Clone()
	if !reflect.DeepEqual(c, e) {
		t.Fatalf("Clone = %#v, want %#v", c, e)
	}
	e.Hash[0], e.Xattrs[0].Value[0], e.Xattrs[1].Name = 9, 'x', "user.c"
	if c.Hash[0] != 1 || string(c.Xattrs[0].Value) != "v" || c.Xattrs[1].Name != "user.b" {
		t.Errorf("Clone shares memory with the original: %#v", c)
	}
	if c := (&Entry{Path: "/d"}).Clone(); c.Hash != nil || c.Xattrs != nil {
		t.Errorf("Clone of nil slices = %#v, want nil slices", c)
	}
}
