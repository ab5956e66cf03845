// Package safetext bounds text that ends up in places a reader trusts
// (Kubernetes Events, /readyz, logs) without splitting a UTF-8 character:
// a message cut in the middle of one shows as a broken byte, or is refused
// by a strict consumer. It is a leaf: it imports nothing of podfim.
package safetext

import "unicode/utf8"

// Ellipsis marks a cut.
const Ellipsis = "..."

// Cut returns s when it is at most limit bytes long, and otherwise the
// longest prefix of s that ends on a rune boundary and leaves room for
// Ellipsis, followed by it: the result is never longer than limit bytes and
// never splits a character that was whole in s. A limit below len(Ellipsis)
// gives an empty prefix and the ellipsis cut to limit.
func Cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	if limit < len(Ellipsis) {
		return Ellipsis[:max(limit, 0)]
	}
	n := limit - len(Ellipsis)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + Ellipsis
}
