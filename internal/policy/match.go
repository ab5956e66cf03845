package policy

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/attr"
)

// Matcher answers, for each path of a scan, whether to record it and with
// which attributes. It is built by Policy.Compile, never changes, and is safe
// for concurrent use. Its methods do not allocate.
type Matcher struct {
	rules   []compiledRule
	root    *node // rule paths as a tree of components
	exclude []pattern
	limits  Limits
}

type compiledRule struct {
	path   string
	attrs  attr.Set
	ignore bool
	index  int // position in Policy.Rules
	// quietTransient: the rule says transient: false.
	quietTransient bool
}

// node is one component of a rule path. Looking up a path walks the tree
// one component at a time, so the cost of a match grows with the depth of
// the path, not with the number of rules.
type node struct {
	name     string
	children []*node          // searched linearly while few: faster than hashing the name
	byName   map[string]*node // set once there are many children
	rule     int32            // index into Matcher.rules, or -1
	// recordsBelow is set when a rule strictly beneath this node records
	// something, so a walker has to enter the directory even if its own rule
	// (or the lack of one) skips it.
	recordsBelow bool
}

// linearChildren is how many children a node searches linearly.
const linearChildren = 8

func newNode(name string) *node { return &node{name: name, rule: -1} }

func (n *node) child(name string) *node {
	if n.byName != nil {
		return n.byName[name] // indexing with a substring does not allocate
	}
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (n *node) insert(p string, rule int32, records bool) {
	for _, c := range strings.Split(p, "/") {
		if c == "" {
			continue
		}
		if records {
			n.recordsBelow = true
		}
		child := n.child(c)
		if child == nil {
			child = newNode(c)
			n.children = append(n.children, child)
			switch {
			case n.byName != nil:
				n.byName[c] = child
			case len(n.children) > linearChildren:
				// Index once, when the list outgrows a linear search; rebuilding
				// the map on every insert made a policy of many sibling rules
				// quadratic (16,000 rules under "/": 36 s to parse).
				n.byName = make(map[string]*node, 2*len(n.children))
				for _, c := range n.children {
					n.byName[c.name] = c
				}
			}
		}
		n = child
	}
	n.rule = rule
}

// Match returns the attributes to record for path, or skip=true if path is
// not recorded: it, or an ancestor, is excluded; its rule is Ignore; or no
// rule covers it. path is relative to the scanned root and starts with "/";
// it is raw bytes and need not be valid UTF-8. Repeated slashes are treated
// as one; "." and ".." are ordinary names (a walker never produces them).
func (m *Matcher) Match(path string) (attrs attr.Set, skip bool) {
	if m.excluded(path) {
		return 0, true
	}
	r, _, _ := m.lookup(path)
	if r < 0 || m.rules[r].ignore {
		return 0, true
	}
	return m.rules[r].attrs, false
}

// Covers reports whether the policy records path or an ancestor of it,
// or ignores path inside a tree it records: whether a baseline made with
// the policy can say that path was added. A policy of the whole tree ("/")
// covers every path, an ignored /tmp included (a file dropped there is
// still not the image's); one for /www only does not cover /hello, and
// neither does one that ignores "/" and records /www (the usual way to
// watch part of an image): an Ignore rule outside every recorded tree
// speaks of nothing. Excluded paths are covered when a rule is for them.
// Like Match, it does not allocate.
func (m *Matcher) Covers(path string) bool {
	n := m.root
	covered := m.records(n.rule)
	for i := 0; ; {
		s, e := nextComponent(path, i)
		if s == len(path) {
			return covered
		}
		if n = n.child(path[s:e]); n == nil {
			return covered
		}
		covered = covered || m.records(n.rule)
		i = e
	}
}

// records reports whether rule r exists and records (is not Ignore).
func (m *Matcher) records(r int32) bool {
	return r >= 0 && !m.rules[r].ignore
}

// Transient reports whether a write that left path's content as it was is
// a finding (Rule.Transient; true unless the rule that matches path says
// false). Like Match, it does not allocate.
func (m *Matcher) Transient(path string) bool {
	r, _, _ := m.lookup(path)
	return r < 0 || !m.rules[r].quietTransient
}

// Descend reports whether a walker has to read the entries of directory
// dir: false if dir is excluded, true if its rule records it or a longer rule
// records something beneath it (a policy watching only /srv/www descends
// into "/" and "/srv" without recording them). A walker that enters a
// directory exactly when Descend says so, and records exactly what Match
// accepts, sees everything the policy asks for and nothing else.
func (m *Matcher) Descend(dir string) bool {
	if m.excluded(dir) {
		return false
	}
	r, n, whole := m.lookup(dir)
	if r >= 0 && !m.rules[r].ignore {
		return true
	}
	return whole && n.recordsBelow
}

// Names reports whether a rule that records is for dir itself or for a path
// beneath it. A scan enters a pseudo file system (procfs, sysfs, cgroupfs...)
// mounted at dir only then: a rule "/" does not name /proc, a rule "/proc"
// or "/proc/sys" does, an Ignore rule never does, and an excluded dir is
// never named.
func (m *Matcher) Names(dir string) bool {
	if m.excluded(dir) {
		return false
	}
	_, n, whole := m.lookup(dir)
	if !whole {
		return false
	}
	return (n.rule >= 0 && !m.rules[n.rule].ignore) || n.recordsBelow
}

// Collects reports whether a rule that records collects any attribute of a:
// a check reads its baseline's Growing entries ahead only when some rule is
// Growing.
func (m *Matcher) Collects(a attr.Set) bool {
	for _, r := range m.rules {
		if !r.ignore && r.attrs&a != 0 {
			return true
		}
	}
	return false
}

// Limits returns the policy's limits.
func (m *Matcher) Limits() Limits { return m.limits }

// lookup returns the index of the rule with the longest path that is a
// component-wise prefix of p (or -1), the deepest tree node reached, and
// whether p ended exactly at that node.
func (m *Matcher) lookup(p string) (rule int32, n *node, whole bool) {
	n = m.root
	rule = n.rule
	for i := 0; ; {
		s, e := nextComponent(p, i)
		if s == len(p) {
			return rule, n, true
		}
		c := n.child(p[s:e])
		if c == nil {
			return rule, n, false
		}
		n = c
		if n.rule >= 0 {
			rule = n.rule
		}
		i = e
	}
}

func (m *Matcher) excluded(p string) bool {
	for i := range m.exclude {
		if m.exclude[i].match(p) {
			return true
		}
	}
	return false
}

// nextComponent returns the bounds [start, end) of the first component of p
// at or after offset i, skipping slashes; start == len(p) when none is left.
func nextComponent(p string, i int) (start, end int) {
	for i < len(p) && p[i] == '/' {
		i++
	}
	start = i
	// A plain loop: components are short, and strings.IndexByte's call
	// costs more than it saves on a dozen bytes.
	for i < len(p) && p[i] != '/' {
		i++
	}
	return start, i
}

type elemKind uint8

const (
	literal       elemKind = iota // compared byte for byte
	star                          // prefix*suffix, the common case ("*.pyc"), without path.Match
	glob                          // any other path.Match pattern
	anyComponents                 // "**": zero or more whole components
)

type elem struct {
	kind     elemKind
	s        string // the literal, or the path.Match pattern
	pre, suf string // of a star element
}

func newElem(c string) elem {
	i := strings.IndexByte(c, '*')
	switch {
	case !strings.ContainsAny(c, `*?[\`):
		return elem{kind: literal, s: c}
	case i >= 0 && !strings.ContainsAny(c[:i], `*?[\`) && !strings.ContainsAny(c[i+1:], `*?[\`):
		return elem{kind: star, s: c, pre: c[:i], suf: c[i+1:]}
	}
	return elem{kind: glob, s: c}
}

// lit returns the text of a literal element, or "".
func (e *elem) lit() string {
	if e.kind == literal {
		return e.s
	}
	return ""
}

func (e *elem) match(c string) bool {
	switch e.kind {
	case literal:
		return e.s == c
	case star:
		// As path.Match: "*" matches any run of bytes without a "/", and a
		// component has none.
		return len(c) >= len(e.pre)+len(e.suf) && strings.HasPrefix(c, e.pre) && strings.HasSuffix(c, e.suf)
	}
	ok, _ := path.Match(e.s, c) // the syntax was checked by compilePattern
	return ok
}

// pattern is a compiled exclude pattern. It always ends with "**", so that
// matching a path means matching the path or one of its ancestors.
type pattern struct {
	src   string
	index int // position in Policy.Exclude
	elems []elem
	fixed int // elems[fixed:] are all "**"
	// need is a substring every matching path contains, when the pattern
	// starts with "**" (an anchored pattern fails fast on its own): most
	// paths do not contain ".pyc" or "__pycache__", and strings.Contains
	// says so faster than a walk over the components.
	need string
}

// compilePattern checks and compiles an exclude pattern.
func compilePattern(src string) (pattern, error) {
	pt := pattern{src: src}
	var body string
	switch {
	case src == "":
		return pt, errors.New("empty pattern")
	case len(src) > maxPathBytes:
		return pt, fmt.Errorf("%d bytes, more than the limit of %d (PATH_MAX)", len(src), maxPathBytes)
	case !utf8.ValidString(src):
		return pt, fmt.Errorf("%q is not valid UTF-8", src)
	case strings.IndexByte(src, 0) >= 0:
		return pt, fmt.Errorf("%q contains a NUL byte", src)
	case src == "/":
		body = ""
	case src[0] == '/':
		body = src[1:]
	case src == "**" || strings.HasPrefix(src, "**/"):
		body = src
	default:
		return pt, fmt.Errorf("%q must start with \"/\" (anchored at the scanned root) or \"**/\" (at any depth)", src)
	}
	if err := checkNames(src); err != nil {
		return pt, fmt.Errorf("%s: %w", brief(src), err)
	}
	if body != "" {
		for _, c := range strings.Split(body, "/") {
			switch {
			case len(pt.elems) == maxPatternComponents:
				return pt, fmt.Errorf("%s: more than %d components", brief(src), maxPatternComponents)
			case c == "":
				return pt, fmt.Errorf("%q has an empty component (a doubled or trailing slash)", src)
			case c == "." || c == "..":
				return pt, fmt.Errorf("%q has a %q component", src, c)
			case c == "**":
				if n := len(pt.elems); n > 0 && pt.elems[n-1].kind == anyComponents {
					continue // "**/**" is "**"
				}
				pt.elems = append(pt.elems, elem{kind: anyComponents})
			case strings.Contains(c, "**"):
				return pt, fmt.Errorf("%q: \"**\" must be a whole component, not part of %q", src, c)
			default:
				if _, err := path.Match(c, ""); err != nil {
					return pt, fmt.Errorf("%q: bad glob %q: %v", src, c, err)
				}
				pt.elems = append(pt.elems, newElem(c))
			}
		}
	}
	pt.fixed = len(pt.elems)
	for pt.fixed > 0 && pt.elems[pt.fixed-1].kind == anyComponents {
		pt.fixed--
	}
	if len(pt.elems) == 0 || pt.elems[len(pt.elems)-1].kind != anyComponents {
		pt.elems = append(pt.elems, elem{kind: anyComponents})
	}
	if pt.elems[0].kind == anyComponents {
		for _, e := range pt.elems[:pt.fixed] {
			for _, lit := range []string{e.lit(), e.pre, e.suf} {
				if len(lit) > len(pt.need) {
					pt.need = lit
				}
			}
		}
	}
	return pt, nil
}

// match reports whether p or one of its ancestors matches the pattern, that
// is whether all of p matches the pattern followed by "**".
//
// It is the classic wildcard matcher with components for characters: on a
// mismatch, the most recent "**" absorbs one more component and matching
// resumes after it. Earlier "**"s never need revisiting, so the cost is at
// most components × elements, however a hostile tree is shaped.
func (pt *pattern) match(p string) bool {
	if !strings.Contains(p, pt.need) {
		return false
	}
	pi, si := 0, 0
	starPi, starSi := -1, 0
	for {
		if pi >= pt.fixed {
			return true // only "**" left, and it matches whatever remains
		}
		s, e := nextComponent(p, si)
		if s == len(p) {
			return false // a fixed element is left and no component
		}
		if pt.elems[pi].kind == anyComponents {
			starPi, starSi = pi, si
			pi++
			continue
		}
		if pt.elems[pi].match(p[s:e]) {
			pi++
			si = e
			continue
		}
		if starPi < 0 {
			return false
		}
		_, starSi = nextComponent(p, starSi)
		pi, si = starPi+1, starSi
	}
}

// canonical writes the pattern in its shortest equivalent form, for the
// digest: anchored at "/", without the implicit trailing "**".
func (pt *pattern) canonical() string {
	var b strings.Builder
	for _, e := range pt.elems[:pt.fixed] {
		b.WriteByte('/')
		if e.kind == anyComponents {
			b.WriteString("**")
		} else {
			b.WriteString(e.s)
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}
