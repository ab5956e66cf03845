package report

import (
	"strconv"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// Issue 11 item 11: a name in `baseline show --entries` cannot pass for the
// fields that follow it. Each hostile entry's line splits on the two-space
// separator into exactly the fields of a plain entry with the same
// attributes, and its path, link target and xattr name read back exactly.
// Before the fix "/www/a  mode=0777  sha256=..." was shown bare.
func TestEntryTextFieldsCannotBeForged(t *testing.T) {
	forge := "  mode=0777  uid=0  sha256=" + strings.Repeat("00", 32)
	for _, tc := range []struct {
		what                string
		path, target, xattr string
	}{
		{"path with fields", "/www/index.html" + forge, "", ""},
		{"path with one space", "/www/a mode=0777", "", ""},
		{"path with a space at the end", "/www/a ", "", ""},
		{"path of spaces", "/   ", "", ""},
		{"path with backslash and spaces", `/a\  b`, "", ""},
		{"link target with fields", "/bin/sh", "dash" + forge, ""},
		{"xattr name with fields", "/etc/x", "", "user.a" + forge},
		{"xattr name with =", "/etc/x", "", "user.a=Zm9v"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			plain := entry("/plain", nil)
			e := entry(tc.path, nil)
			if tc.target != "" {
				plain.Type, plain.Target, plain.Hash = attr.TypeSymlink, "t", nil
				e.Type, e.Target, e.Hash = attr.TypeSymlink, tc.target, nil
			}
			if tc.xattr != "" {
				plain.Xattrs = []attr.Xattr{{Name: "user.p", Value: []byte("v")}}
				e.Xattrs = []attr.Xattr{{Name: tc.xattr, Value: []byte("v")}}
			}
			line := EntryText(&e)
			fields := strings.Split(line, "  ")
			if want := len(strings.Split(EntryText(&plain), "  ")); len(fields) != want {
				t.Fatalf("%d fields, want %d: %s", len(fields), want, line)
			}
			if got := unquoteField(t, fields[0]); got != tc.path {
				t.Errorf("path reads back as %q, want %q", got, tc.path)
			}
			for _, f := range fields[1:] {
				switch {
				case tc.target != "" && strings.HasPrefix(f, "target="):
					if got := unquoteField(t, strings.TrimPrefix(f, "target=")); got != tc.target {
						t.Errorf("target reads back as %q", got)
					}
				case tc.xattr != "" && strings.HasPrefix(f, "xattr:"):
					name := strings.TrimPrefix(f, "xattr:")
					if strings.HasPrefix(name, `"`) {
						end := strings.LastIndex(name, `"=`)
						if end < 0 {
							t.Fatalf("xattr field %s", f)
						}
						name = name[:end+1]
					} else {
						name, _, _ = strings.Cut(name, "=")
					}
					if got := unquoteField(t, name); got != tc.xattr {
						t.Errorf("xattr name reads back as %q from %s", got, f)
					}
				}
			}
		})
	}
}

// unquoteField reads a field as quote wrote it.
func unquoteField(t *testing.T, f string) string {
	t.Helper()
	if !strings.HasPrefix(f, `"`) {
		return f
	}
	s, err := strconv.Unquote(f)
	if err != nil {
		t.Fatalf("field %s: %v", f, err)
	}
	return s
}
