package attr

import (
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
