package policy

import (
	"strings"
	"testing"
)

// A rule's `transient` says whether a write that left a protected file as
// it was is a finding; it is inherited like the rule's attributes, and only
// true or false is accepted.
func TestRuleTransient(t *testing.T) {
	p, err := Parse([]byte(`version: 1
rules:
  - path: /
    preset: ReadOnly
  - path: /var/cache/app
    preset: ReadOnly
    transient: false
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{"/etc/passwd": true, "/var/cache/app": false, "/var/cache/app/x": false, "/var/cache": true} {
		if got := m.Transient(path); got != want {
			t.Errorf("Transient(%q) = %v, want %v", path, got, want)
		}
	}
	if _, err := Parse([]byte("version: 1\nrules:\n  - path: /\n    transient: \"no\"\n")); err == nil ||
		!strings.Contains(err.Error(), "rules[0].transient: want true or false") {
		t.Errorf("transient: \"no\": %v", err)
	}
	// The digest covers the knob, and a policy that does not use it keeps
	// its digest: baselines made before it existed still match.
	digest := func(extra string) string {
		p, err := Parse([]byte("version: 1\nrules:\n  - path: /\n    preset: ReadOnly\n" + extra))
		if err != nil {
			t.Fatal(err)
		}
		return p.Digest()
	}
	if none, on, off := digest(""), digest("    transient: true\n"), digest("    transient: false\n"); none != on || none == off {
		t.Errorf("digests: none %s, true %s, false %s; want none == true != false", none, on, off)
	}
}
