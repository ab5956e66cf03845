package server

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxReasons bounds the violations /readyz lists, so that a tampered tree
// with thousands of modified files cannot turn it into a large response.
const maxReasons = 50

// Readiness is the state /readyz reports. The sidecar's is its responder
// (respond.Responder), which owns the ledger of open violations: readiness
// is a view of it, never a second record that would have to agree.
type Readiness interface {
	// Readiness reports whether the first full verification of the target
	// completed, and the violations that hold the pod out of service: at
	// most max keys (paths of the target) in order, and how many there are.
	Readiness(max int) (verified bool, violations []string, total int)
}

// Blocked may be implemented by a Readiness whose target cannot be
// verified at all for now: Blocked says why (the sidecar's baseline for the
// running image was refused), "" when nothing blocks. /readyz then names
// that instead of "not started". The text is the caller's to bound and to
// keep free of secrets; Ready quotes it when it is not printable.
type Blocked interface {
	Blocked() string
}

// Ready reports whether r lets the pod receive traffic and, when it does
// not, why: one human-readable reason per line of /readyz. The pod is ready
// only once the first full verification of the target has completed
// (serving an unverified container would defeat the check at startup, NIST
// SI-7) and while no violation holds it out of service. At most maxReasons
// violations are listed, then a count of the rest; keys that are not
// printable UTF-8 are Go-quoted so that a hostile file name cannot forge
// lines. A nil r is always ready.
func Ready(r Readiness) (bool, []string) {
	if r == nil {
		return true, nil
	}
	verified, keys, total := r.Readiness(maxReasons)
	var reasons []string
	if !verified {
		reasons = append(reasons, notVerified(r))
	}
	shown := keys[:min(len(keys), maxReasons)]
	for _, k := range shown {
		reasons = append(reasons, "integrity violation: "+quote(k))
	}
	if rest := max(total, len(keys)) - len(shown); rest > 0 {
		reasons = append(reasons, fmt.Sprintf("and %d more integrity violations", rest))
	}
	return len(reasons) == 0, reasons
}

// notVerified is the /readyz line of a target not verified yet.
func notVerified(r Readiness) string {
	if b, ok := r.(Blocked); ok {
		if why := b.Blocked(); why != "" {
			return "not verified: " + quote(why)
		}
	}
	return "not started: the first full verification of the target has not completed"
}

// quote returns s as is when it is printable UTF-8, and Go-quoted otherwise.
func quote(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, c := range s {
		if !strconv.IsPrint(c) || c == '"' || c == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}
