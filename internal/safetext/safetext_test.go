package safetext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdefgh", 7, "abcd..."},
		// "é" is 2 bytes: a prefix of 3 bytes would split the second.
		{"éééé", 7, "éé..."},
		{"éééé", 6, "é..."},
		{"ééé", 6, "ééé"},
		{"€€", 5, "..."},
		{"€€", 6, "€€"},
		{"abc", 2, ".."},
		{"abc", 0, ""},
		{"abc", -1, ""},
	} {
		got := Cut(tc.s, tc.max)
		if got != tc.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
		}
		if len(got) > max(tc.max, 0) {
			t.Errorf("Cut(%q, %d) = %q is %d bytes", tc.s, tc.max, got, len(got))
		}
	}
	// Every cut of a string of multi-byte characters stays valid UTF-8.
	s := strings.Repeat("a€é𝄞", 50)
	for n := range len(s) + 2 {
		if got := Cut(s, n); !utf8.ValidString(got) {
			t.Fatalf("Cut(_, %d) = %q is not valid UTF-8", n, got)
		}
	}
}

func FuzzCut(f *testing.F) {
	f.Add("ééé", 5)
	f.Add("a\xffb", 2)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n %= 4096
		got := Cut(s, n)
		if len(got) > max(n, 0) {
			t.Fatalf("Cut(%q, %d) = %q: %d bytes", s, n, got, len(got))
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Cut(%q, %d) = %q splits a character", s, n, got)
		}
	})
}
