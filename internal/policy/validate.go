package policy

import (
	"errors"
	"fmt"
	"math/bits"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/attr"
)

// hashes maps the names a policy may give its hash to the attribute.
var hashes = map[string]attr.Set{"sha256": attr.SHA256, "sha512": attr.SHA512, "blake3": attr.BLAKE3}

// presetSet returns the attributes of a recording preset with hash h.
func presetSet(name string, h attr.Set) (attr.Set, bool) {
	switch name {
	case PresetReadOnly:
		return attr.All&^attr.Hashes | h, true
	case PresetGrowing:
		return attr.Type | attr.Mode | attr.UID | attr.GID | attr.Inode | attr.Nlink | attr.Xattrs |
			attr.Size | h | attr.Growing, true
	}
	return 0, false
}

// Validate reports every problem with p, one per line, each naming the field
// ("rules[2].preset: ..."). A nil error means Compile succeeds.
func (p *Policy) Validate() error {
	_, errs := p.build()
	return errors.Join(errs...)
}

// Compile validates p and returns the Matcher for it. The Matcher does not
// refer to p: later changes to p do not affect it.
func (p *Policy) Compile() (*Matcher, error) {
	m, errs := p.build()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// problems collects validation errors.
type problems []error

func (e *problems) add(where, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
}

// build validates p and, if it is valid, compiles it.
func (p *Policy) build() (*Matcher, []error) {
	var errs problems
	switch p.Version {
	case Version:
	case 0:
		errs.add("version", "missing (want %d)", Version)
	default:
		errs.add("version", "unsupported version %d (want %d)", p.Version, Version)
	}
	h, ok := hashes[p.Hash]
	if !ok {
		errs.add("hash", "unknown hash %q (want sha256, sha512 or blake3)", p.Hash)
		h = attr.SHA256 // keep checking the rules without a cascade of errors
	}

	m := &Matcher{root: newNode(""), limits: p.Limits}
	switch {
	case len(p.Rules) == 0:
		errs.add("rules", "no rules (want at least one; a rule for \"/\" covers everything)")
	case len(p.Rules) > maxRules:
		errs.add("rules", "%d rules, more than the limit of %d", len(p.Rules), maxRules)
	}
	if len(p.Exclude) > maxExcludes {
		errs.add("exclude", "%d patterns, more than the limit of %d", len(p.Exclude), maxExcludes)
	}
	if len(errs) > 0 && (len(p.Rules) > maxRules || len(p.Exclude) > maxExcludes) {
		return nil, errs // not one error per entry of an oversized list
	}
	seen := make(map[string]int, len(p.Rules))
	for i, r := range p.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		pathErr := checkRulePath(r.Path)
		if pathErr != nil {
			errs.add(where+".path", "%v", pathErr)
		} else if j, dup := seen[r.Path]; dup {
			errs.add(where+".path", "duplicate path %q (also rules[%d])", r.Path, j)
			pathErr = errors.New("duplicate")
		}
		set, ignore := resolve(r, h, p.Hash, where, &errs)
		if pathErr != nil {
			continue
		}
		seen[r.Path] = i
		m.rules = append(m.rules, compiledRule{path: r.Path, attrs: set, ignore: ignore, index: i,
			quietTransient: r.Transient != nil && !*r.Transient})
	}

	seenPat := make(map[string]int, len(p.Exclude))
	for i, s := range p.Exclude {
		where := fmt.Sprintf("exclude[%d]", i)
		pat, err := compilePattern(s)
		if err != nil {
			errs.add(where, "%v", err)
			continue
		}
		if j, dup := seenPat[s]; dup {
			errs.add(where, "duplicate pattern %q (also exclude[%d])", s, j)
			continue
		}
		seenPat[s] = i
		pat.index = i
		m.exclude = append(m.exclude, pat)
	}

	// A recording rule under an exclude can never take effect: the author
	// meant something else. (An Ignore rule there is merely redundant.)
	if err := checkCrossCost(m); err != nil {
		errs.add("exclude", "%v", err)
		return nil, errs
	}
	for _, r := range m.rules {
		if r.ignore {
			continue
		}
		for _, pat := range m.exclude {
			if pat.match(r.path) {
				errs.add(fmt.Sprintf("rules[%d].path", r.index), "%q is excluded by exclude[%d] %q, so the rule never applies", r.path, pat.index, pat.src)
				break
			}
		}
	}

	checkLimits(p.Limits, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	for i := range m.rules {
		m.root.insert(m.rules[i].path, int32(i), !m.rules[i].ignore)
	}
	return m, nil
}

// checkLimits checks that every limit is positive.
func checkLimits(l Limits, errs *problems) {
	d := DefaultLimits()
	positive := func(name string, v, def int64) {
		if v <= 0 {
			errs.add("limits."+name, "must be positive, got %d (the default is %d)", v, def)
		}
	}
	positive("maxFiles", int64(l.MaxFiles), int64(d.MaxFiles))
	positive("maxDepth", int64(l.MaxDepth), int64(d.MaxDepth))
	positive("maxFileBytes", l.MaxFileBytes, d.MaxFileBytes)
	positive("maxFindings", int64(l.MaxFindings), int64(d.MaxFindings))
}

// resolve returns the attributes rule r records, or ignore, reporting
// problems under where ("rules[2]").
func resolve(r Rule, h attr.Set, hashName, where string, errs *problems) (set attr.Set, ignore bool) {
	preset := r.Preset != ""
	switch {
	case !preset && r.Attributes == nil:
		errs.add(where, "needs a preset or attributes")
		return 0, false
	case preset && r.Attributes != nil:
		errs.add(where, "has both preset and attributes (use add and remove to adjust a preset)")
		return 0, false
	}

	if !preset {
		if len(r.Add) > 0 || len(r.Remove) > 0 {
			errs.add(where, "add and remove adjust a preset; with attributes, list them all")
		}
		if len(r.Attributes) == 0 {
			errs.add(where+".attributes", "empty (want at least one attribute, or preset: Ignore to skip the subtree)")
			return 0, false
		}
		before := len(*errs)
		set = parseNames(r.Attributes, where+".attributes", errs)
		if len(*errs) == before {
			checkSet(set, where, "", errs)
		}
		return set, false
	}

	if r.Preset == PresetIgnore {
		if len(r.Add) > 0 || len(r.Remove) > 0 {
			errs.add(where, "add and remove do not apply to preset Ignore")
		}
		return 0, true
	}
	base, ok := presetSet(r.Preset, h)
	if !ok {
		errs.add(where+".preset", "unknown preset %q (want ReadOnly, Growing or Ignore)", r.Preset)
		return 0, false
	}
	before := len(*errs)
	add := parseNames(r.Add, where+".add", errs)
	remove := parseNames(r.Remove, where+".remove", errs)
	for i, n := range r.Add {
		if s, err := attr.Parse(n); err == nil && base.Any(s) {
			errs.add(fmt.Sprintf("%s.add[%d]", where, i), "%q is already in preset %s", n, r.Preset)
		}
	}
	for i, n := range r.Remove {
		if s, err := attr.Parse(n); err == nil && !base.Any(s) {
			errs.add(fmt.Sprintf("%s.remove[%d]", where, i), "%q is not in preset %s (%s)", n, r.Preset, base)
		}
	}
	if both := add & remove; both != 0 {
		errs.add(where, "%s is in both add and remove", both)
	}
	set = (base | add) &^ remove
	hint := ""
	if add.Any(attr.Hashes) && !remove.Any(attr.Hashes) {
		hint = fmt.Sprintf(" (preset %s has the policy's hash %s: remove it, or set the policy's hash)", r.Preset, hashName)
	}
	if len(*errs) == before {
		checkSet(set, where, hint, errs)
	}
	return set, false
}

// parseNames parses attribute names, reporting unknown and repeated ones.
func parseNames(names []string, where string, errs *problems) attr.Set {
	var set attr.Set
	for i, n := range names {
		s, err := attr.Parse(n)
		if err != nil {
			errs.add(fmt.Sprintf("%s[%d]", where, i), "%v", err)
			continue
		}
		if set.Any(s) {
			errs.add(fmt.Sprintf("%s[%d]", where, i), "%q is listed twice", n)
		}
		set |= s
	}
	return set
}

// checkSet checks the rules every recorded set obeys.
func checkSet(set attr.Set, where, hashHint string, errs *problems) {
	if n := bits.OnesCount32(uint32(set & attr.Hashes)); n > 1 {
		errs.add(where, "more than one hash (%s); a rule has at most one%s", set&attr.Hashes, hashHint)
	}
	if set.Has(attr.Growing) && !set.Has(attr.Size) {
		errs.add(where, "growing requires size")
	}
	if set == 0 {
		errs.add(where, "no attributes left (use preset: Ignore to skip the subtree)")
	}
}

// checkRulePath checks that p is a usable rule path: absolute, clean text
// that a Linux file system can hold.
func checkRulePath(p string) error {
	switch {
	case p == "":
		return errors.New("missing")
	case len(p) > maxPathBytes:
		return fmt.Errorf("%d bytes, more than the limit of %d (PATH_MAX)", len(p), maxPathBytes)
	case !utf8.ValidString(p):
		return fmt.Errorf("%q is not valid UTF-8", p)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%q contains a NUL byte", p)
	case p[0] != '/':
		return fmt.Errorf("%q is relative (want an absolute path such as %q)", p, path.Join("/", p))
	case path.Clean(p) != p:
		return fmt.Errorf("%q is not clean (want %q)", p, path.Clean(p))
	}
	return checkNames(p)
}

// checkNames checks that no component of a rule path or pattern is longer
// than a file name can be.
func checkNames(p string) error {
	for c := range strings.SplitSeq(p, "/") {
		if len(c) > maxNameBytes {
			return fmt.Errorf("a component of %d bytes (%s), more than the limit of %d (NAME_MAX)", len(c), brief(c), maxNameBytes)
		}
	}
	return nil
}

// checkCrossCost refuses a policy whose rules and patterns are too large to
// check against each other (maxCrossCheck).
func checkCrossCost(m *Matcher) error {
	var rules, patterns int64
	for _, r := range m.rules {
		if !r.ignore {
			rules += int64(len(r.path))
		}
	}
	for _, pt := range m.exclude {
		patterns += int64(len(pt.src))
	}
	if rules*patterns > maxCrossCheck {
		return fmt.Errorf("%d bytes of recording rule paths and %d bytes of patterns: too many to check against each other "+
			"(their product is more than the limit of %d; use fewer or shorter rules or patterns)", rules, patterns, maxCrossCheck)
	}
	return nil
}

// brief quotes s, cut to its first 64 bytes when longer: an error about an
// oversized value need not repeat all of it.
func brief(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:64]) + "..."
}
