package evidence

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pmezard/go-difflib/difflib"
)

// Unified returns the unified diff (3 lines of context) from old to new,
// the file named path on both sides. path is Go-quoted when it is not
// plain, so the header is one line whatever the name.
func Unified(path string, old, new []byte) []byte {
	name := path
	if strconv.Quote(path) != `"`+path+`"` || strings.ContainsAny(path, " \t") {
		name = strconv.Quote(path)
	}
	d := difflib.UnifiedDiff{
		A:        difflib.SplitLines(string(old)),
		B:        difflib.SplitLines(string(new)),
		FromFile: name + " (baseline)",
		ToFile:   name + " (found)",
		Context:  3,
	}
	s, err := difflib.GetUnifiedDiffString(d)
	if err != nil {
		// It writes to a strings.Builder: it cannot fail.
		return nil
	}
	return []byte(s)
}

// excerpt returns the short, escaped description of a capture that goes
// into log lines, Events and webhooks: the diff's changed lines when there
// is a diff, else the type and size.
func excerpt(rec *Record, diff []byte) string {
	if diff == nil {
		if rec.Type == TypeNone {
			return ""
		}
		return fmt.Sprintf("%s, %d bytes", rec.Type, rec.Size)
	}
	var b strings.Builder
	for line := range strings.SplitSeq(string(diff), "\n") {
		if strings.HasPrefix(line, "+++") || strings.HasPrefix(line, "---") {
			continue
		}
		if !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "-") {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(line)
		if b.Len() >= ExcerptBytes {
			break
		}
	}
	return Escape(b.String(), ExcerptBytes)
}

// Escape returns at most max bytes of s (cut at a rune boundary, "..."
// appended when cut) Go-quoted without the quotes: newlines, terminal
// escapes, bidirectional overrides and invalid UTF-8 all become visible
// escapes, so the result is one printable line whatever s holds.
func Escape(s string, max int) string {
	n := 0
	for n < len(s) {
		// An invalid byte decodes as one byte: it is kept and escaped.
		_, size := utf8.DecodeRuneInString(s[n:])
		if n+size > max {
			break
		}
		n += size
	}
	cut := n < len(s)
	s = s[:n]
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	if cut {
		q += "..."
	}
	return q
}
