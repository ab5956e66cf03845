package evidence

import (
	"bytes"
	"unicode/utf8"
)

// Type is what a file's first bytes say it is.
type Type string

// Types.
const (
	TypeNone   Type = "none"   // nothing was read
	TypeEmpty  Type = "empty"  // no bytes
	TypeELF    Type = "elf"    // an ELF executable or library
	TypeScript Type = "script" // starts with "#!"
	TypeText   Type = "text"   // UTF-8 without NUL bytes in the first sniffBytes
	TypeBinary Type = "binary" // anything else
)

// Text reports whether a diff of the type is meaningful.
func (t Type) Text() bool { return t == TypeText || t == TypeScript || t == TypeEmpty }

// sniffBytes is how much of a file Sniff reads: the first bytes decide.
const sniffBytes = 8 << 10

// Sniff returns the type of a file whose content starts with b (and has
// size bytes in all).
func Sniff(b []byte, size int64) Type {
	switch {
	case size == 0 && len(b) == 0:
		return TypeEmpty
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		return TypeELF
	case bytes.HasPrefix(b, []byte("#!")):
		return TypeScript
	}
	head := b[:min(len(b), sniffBytes)]
	if bytes.IndexByte(head, 0) >= 0 {
		return TypeBinary
	}
	// A multi-byte rune may be cut at the end of head when head is not
	// all of b.
	for i := 0; len(head) < len(b) && i < utf8.UTFMax-1 && len(head) > 0 && !utf8.Valid(head); i++ {
		head = head[:len(head)-1]
	}
	if !utf8.Valid(head) {
		return TypeBinary
	}
	return TypeText
}
