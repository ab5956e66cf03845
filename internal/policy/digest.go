package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
)

// canonicalPolicy is what the digest covers: the meaning of a policy, not
// its spelling. Every field that changes what a scan records or reports must
// be in it; adding one changes every digest, so do it with a format version.
type canonicalPolicy struct {
	Version int             `json:"version"`
	Rules   []canonicalRule `json:"rules"`   // sorted by path
	Exclude []string        `json:"exclude"` // canonical patterns, sorted, unique
	Limits  Limits          `json:"limits"`
}

type canonicalRule struct {
	Path       string   `json:"path"`
	Ignore     bool     `json:"ignore,omitempty"`
	Attributes []string `json:"attributes,omitempty"` // resolved, in attr order
	// QuietTransient is `transient: false`; omitted when false, so the
	// digests of policies that do not use the knob did not change with it.
	QuietTransient bool `json:"quietTransient,omitempty"`
}

// Digest returns the hex SHA-256 of a canonical JSON encoding of p, or ""
// if p is not valid. A baseline records it so that a check can tell whether
// the policy changed since.
//
// The encoding holds the version, the limits (defaults filled in), the rules
// sorted by path with their resolved attributes (not the preset, hash or
// add/remove that produced them) and the excludes in canonical form ("**/x"
// is "/**/x", "/a/**" is "/a"), sorted. Rule and exclude order never matter
// to matching, so the digest does not depend on them, nor on YAML
// formatting, comments, key order or flow versus block style. Any change to
// a rule's path, attributes or `transient: false`, an exclude or a limit
// changes it.
func (p *Policy) Digest() string {
	m, errs := p.build()
	if len(errs) > 0 {
		return ""
	}
	c := canonicalPolicy{Version: p.Version, Limits: m.limits, Rules: []canonicalRule{}, Exclude: []string{}}
	for _, r := range m.rules {
		cr := canonicalRule{Path: r.path, Ignore: r.ignore, QuietTransient: r.quietTransient}
		if !r.ignore {
			cr.Attributes = r.attrs.Names()
		}
		c.Rules = append(c.Rules, cr)
	}
	slices.SortFunc(c.Rules, func(a, b canonicalRule) int { return strings.Compare(a.Path, b.Path) })
	for i := range m.exclude {
		c.Exclude = append(c.Exclude, m.exclude[i].canonical())
	}
	slices.Sort(c.Exclude)
	c.Exclude = slices.Compact(c.Exclude)
	b, err := json.Marshal(c)
	if err != nil {
		panic("policy: encoding the canonical policy: " + err.Error()) // plain strings and ints cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
