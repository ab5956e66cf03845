package policy

import (
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// mustCompile parses a policy and compiles it, failing the test on error.
func mustCompile(t testing.TB, yaml string) *Matcher {
	t.Helper()
	p, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	m, err := p.Compile()
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return m
}

const (
	readOnly = attr.All
	growing  = attr.Type | attr.Mode | attr.UID | attr.GID | attr.Inode | attr.Nlink | attr.Xattrs |
		attr.Size | attr.SHA256 | attr.Growing
	skip attr.Set = 1 << 31 // in the tables below: Match must skip
)

type matchCase struct {
	path string
	want attr.Set // or skip
}

func checkMatches(t *testing.T, m *Matcher, cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		got, skipped := m.Match(c.path)
		switch {
		case c.want == skip && !skipped:
			t.Errorf("Match(%q) = %v, want skip", c.path, got)
		case c.want != skip && skipped:
			t.Errorf("Match(%q) skipped, want %v", c.path, c.want)
		case c.want != skip && got != c.want:
			t.Errorf("Match(%q) = %v, want %v", c.path, got, c.want)
		case skipped && got != 0:
			t.Errorf("Match(%q) skipped with attributes %v, want none", c.path, got)
		}
	}
}

func TestMatchLongestPrefix(t *testing.T) {
	m := mustCompile(t, `
version: 1
rules:
  - {path: /, preset: ReadOnly}
  - {path: /etc, attributes: [type, mode]}
  - {path: /etc/ssl, attributes: [sha512]}
  - {path: /etc/ssl/private, preset: Ignore}
  - {path: /etc/ssl/private/keep, attributes: [uid]}
  - {path: /var/log, preset: Growing}
  - {path: /a b/ü, attributes: [gid]}
`)
	checkMatches(t, m, []matchCase{
		{"/", readOnly},
		{"/bin/sh", readOnly},
		{"/etc", attr.Type | attr.Mode},
		{"/etc/passwd", attr.Type | attr.Mode},
		{"/etcd", readOnly},       // component boundary: /etc does not cover /etcd
		{"/etcd/x", readOnly},     //
		{"/etc.d", readOnly},      // nor /etc.d
		{"/et", readOnly},         // nor a prefix of a component
		{"/etc/ssl", attr.SHA512}, // the longer rule wins for the path itself
		{"/etc/ssl/certs/ca.pem", attr.SHA512},
		{"/etc/sslx", attr.Type | attr.Mode},
		{"/etc/ssl/private", skip},
		{"/etc/ssl/private/key.pem", skip},
		{"/etc/ssl/private/keep", attr.UID}, // a longer rule re-includes part of an Ignore subtree
		{"/etc/ssl/private/keep/x", attr.UID},
		{"/etc/ssl/private/keeps", skip},
		{"/var/log/app.log", growing},
		{"/var/logs", readOnly},
		{"/a b/ü/x", attr.GID},
		{"/a b/u/x", readOnly},
		// Repeated and trailing slashes are one separator.
		{"//etc//ssl/", attr.SHA512},
		{"/etc/", attr.Type | attr.Mode},
	})
}

func TestMatchWithoutRootRule(t *testing.T) {
	m := mustCompile(t, `
version: 1
rules:
  - {path: /srv/www, preset: ReadOnly}
  - {path: /srv/www/cache, preset: Ignore}
  - {path: /opt/a/b, preset: Ignore}
`)
	checkMatches(t, m, []matchCase{
		{"/", skip},
		{"/srv", skip},
		{"/srv/www", readOnly},
		{"/srv/www/index.html", readOnly},
		{"/srv/wwwx", skip},
		{"/srv/www/cache/x", skip},
		{"/etc/passwd", skip},
		{"/opt/a/b/c", skip},
	})
	for dir, want := range map[string]bool{
		"/":              true, // a recording rule lies beneath
		"/srv":           true,
		"/srv/www":       true,
		"/srv/www/img":   true,
		"/srv/www/cache": false, // Ignore, nothing recorded beneath
		"/srv/other":     false,
		"/etc":           false,
		"/opt":           false, // only an Ignore rule beneath
		"/opt/a":         false,
	} {
		if got := m.Descend(dir); got != want {
			t.Errorf("Descend(%q) = %v, want %v", dir, got, want)
		}
	}
}

func TestDescend(t *testing.T) {
	m := mustCompile(t, `
version: 1
rules:
  - {path: /, preset: ReadOnly}
  - {path: /var, preset: Ignore}
  - {path: /var/lib/app, preset: ReadOnly}
  - {path: /var/lib/app/tmp, preset: Ignore}
exclude: [/proc, "**/.git"]
`)
	for dir, want := range map[string]bool{
		"/":                   true,
		"/usr":                true,
		"/var":                true, // ignored, but /var/lib/app is beneath
		"/var/lib":            true,
		"/var/lib/app":        true,
		"/var/lib/app/x":      true,
		"/var/lib/app/tmp":    false,
		"/var/lib/other":      false,
		"/var/log":            false,
		"/proc":               false, // excluded
		"/proc/1":             false,
		"/var/lib/app/.git":   false, // excluded by a pattern, though its rule records
		"/var/lib/app/.git/x": false,
	} {
		if got := m.Descend(dir); got != want {
			t.Errorf("Descend(%q) = %v, want %v", dir, got, want)
		}
	}
	// Descend and Match agree: a recorded directory is entered.
	for _, p := range []string{"/", "/usr", "/var/lib/app", "/var/lib/app/x"} {
		if _, skipped := m.Match(p); skipped || !m.Descend(p) {
			t.Errorf("%q: Match skipped=%v, Descend=%v; want recorded and entered", p, skipped, m.Descend(p))
		}
	}
}

func TestMatchExcludes(t *testing.T) {
	m := mustCompile(t, `
version: 1
rules:
  - {path: /, preset: ReadOnly}
exclude:
  - /proc
  - /var/cache/**
  - "**/*.pyc"
  - "**/__pycache__/**"
  - /home/*/.cache
  - /data/?.tmp
  - /srv/[ab]*
  - /srv/[^x]x
  - /opt/**/build/**/*.o
  - /lit/a\*b
  - /x/**/y
`)
	checkMatches(t, m, []matchCase{
		// A plain path excludes itself and everything beneath it.
		{"/proc", skip},
		{"/proc/1/status", skip}, // ancestors are checked: correct even when called directly
		{"/procx", readOnly},
		{"/pro", readOnly},
		{"/", readOnly},
		// A trailing "**" matches zero components too.
		{"/var/cache", skip},
		{"/var/cache/apt/archives/x.deb", skip},
		{"/var/cachex", readOnly},
		{"/var", readOnly},
		// A leading "**/" matches at any depth, including the top.
		{"/x.pyc", skip},
		{"/usr/lib/python3/a.pyc", skip},
		{"/usr/lib/python3/a.py", readOnly},
		{"/usr/lib/a.pyc/inside", skip}, // beneath a matching directory
		{"/usr/lib/.pyc", skip},         // path.Match: * matches the empty string
		{"/usr/lib/a.pycx", readOnly},
		{"/app/__pycache__", skip},
		{"/app/pkg/__pycache__/m.cpython-312.pyc", skip},
		// * and ? stay within one component.
		{"/home/alice/.cache", skip},
		{"/home/alice/.cache/x", skip},
		{"/home/alice/bob/.cache", readOnly},
		{"/home/.cache", readOnly},
		{"/data/a.tmp", skip},
		{"/data/ab.tmp", readOnly},
		{"/data/.tmp", readOnly},
		{"/data/x/a.tmp", readOnly},
		// Character classes.
		{"/srv/apple", skip},
		{"/srv/b", skip},
		{"/srv/cherry", readOnly},
		{"/srv/yx", skip},
		{"/srv/xx", readOnly},
		// "**" between fixed components.
		{"/opt/build/a.o", skip},
		{"/opt/a/b/build/c/d/e.o", skip},
		{"/opt/a/build/e.c", readOnly},
		{"/opt/a/build/x/build/e.o", skip},
		{"/opt/build", readOnly},
		// Escapes.
		{"/lit/a*b", skip},
		{"/lit/axb", readOnly},
		// Backtracking over "**".
		{"/x/y", skip},
		{"/x/y/y", skip},
		{"/x/a/y", skip},
		{"/x/a/b/c", readOnly},
		{"/x/y0/a", readOnly},
	})
}

func TestMatchNonUTF8(t *testing.T) {
	m := mustCompile(t, `
version: 1
rules:
  - {path: /, preset: ReadOnly}
  - {path: /etc, attributes: [type]}
  - {path: /ünïcode, attributes: [gid]}
exclude:
  - /data/?
  - /star/*
  - /class/[^a]
  - "**/*.pyc"
`)
	checkMatches(t, m, []matchCase{
		{"/\xff", readOnly},
		{"/\xff/\xfe\xfd", readOnly},
		{"/etc/\xff\xfe", attr.Type},
		{"/etc\xff", readOnly},                 // not /etc
		{"/\xc3\xbcn\xc3\xafcode/x", attr.GID}, // the rule path's UTF-8 bytes
		{"/\xfcn\xefcode/x", readOnly},         // the same name in Latin-1 is another name
		{"/data/\xff", skip},                   // ? matches one invalid byte
		{"/data/\xff\xff", readOnly},
		{"/data/é", skip}, // ? matches one character, not one byte
		{"/star/\x80\x81/x", skip},
		{"/class/\xff", skip},
		{"/class/a", readOnly},
		{"/lib/\xff.pyc", skip},
		{"/lib/\xff.py", readOnly},
	})
}

func TestDefaultPolicy(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatalf("Default().Validate: %v", err)
	}
	m, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	checkMatches(t, m, []matchCase{
		{"/", readOnly},
		{"/usr/bin/ls", readOnly},
		{"/etc/passwd", readOnly},
		{"/app/server", readOnly},
		{"/app/x.pyc", readOnly}, // compiled code is watched
		{"/var/log/app.log", growing},
		{"/var/log/nginx/access.log", growing},
		{"/proc/1/status", skip},
		{"/proc", skip},
		{"/sys/fs/cgroup/memory.max", skip},
		{"/dev/null", skip},
		{"/run/nginx.pid", skip},
		{"/var/run/secrets/kubernetes.io/serviceaccount/token", skip},
		{"/tmp/x", skip},
		{"/tmp", skip},
		{"/var/tmp/x", skip},
		{"/var/cache/nginx/client_temp", skip},
		// The runtime's bind mounts are told apart by the mount table
		// (package origin), not by a rule: a host's /etc/hosts is watched.
		{"/etc/hosts", readOnly},
		{"/etc/hostname", readOnly},
		{"/etc/resolv.conf", readOnly},
		{"/etc/hosts.allow", readOnly},
		{"/tmpfile", readOnly},
		{"/var/lib/dpkg/status", readOnly},
	})
	if got, want := m.Limits(), DefaultLimits(); got != want {
		t.Errorf("Limits() = %+v, want %+v", got, want)
	}
	if !m.Descend("/usr") || m.Descend("/proc") || m.Descend("/tmp") {
		t.Error("Default: Descend must enter /usr and skip /proc and /tmp")
	}
	// Default returns a fresh value: callers may change theirs.
	p.Rules[0].Preset = PresetIgnore
	if Default().Rules[0].Preset != PresetReadOnly {
		t.Error("Default shares state between calls")
	}
}

func TestMatcherIndependentOfPolicy(t *testing.T) {
	p := Default()
	m, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	p.Rules[0].Preset = PresetIgnore
	p.Limits.MaxFiles = 1
	if _, skipped := m.Match("/usr/bin/ls"); skipped || m.Limits().MaxFiles == 1 {
		t.Error("changing the Policy changed a compiled Matcher")
	}
}

// benchPaths is a mix like a container image's: mostly deep paths under
// recorded rules, some under ignored and excluded trees, some non-UTF-8.
func benchPaths() []string {
	var ps []string
	for i := range 40 {
		ps = append(ps,
			fmt.Sprintf("/usr/lib/python3.12/site-packages/pkg%d/module_%d.py", i%7, i),
			fmt.Sprintf("/usr/lib/python3.12/site-packages/pkg%d/__pycache__/module_%d.cpython-312.pyc", i%7, i),
			fmt.Sprintf("/usr/share/doc/package-%d/changelog.Debian.gz", i),
			fmt.Sprintf("/usr/bin/tool%d", i),
			fmt.Sprintf("/etc/ssl/certs/cert-%d.pem", i),
			fmt.Sprintf("/var/log/app/app-%d.log", i),
			fmt.Sprintf("/proc/%d/status", i),
			fmt.Sprintf("/app/node_modules/dep%d/lib/index.js", i),
			fmt.Sprintf("/app/data/\xff\xfe-%d", i),
		)
	}
	return ps
}

const benchPolicy = `
version: 1
rules:
  - {path: /, preset: ReadOnly}
  - {path: /dev, preset: Ignore}
  - {path: /proc, preset: Ignore}
  - {path: /sys, preset: Ignore}
  - {path: /run, preset: Ignore}
  - {path: /tmp, preset: Ignore}
  - {path: /var/tmp, preset: Ignore}
  - {path: /var/cache, preset: Ignore}
  - {path: /var/log, preset: Growing}
  - {path: /etc, attributes: [type, mode, uid, gid, sha512]}
  - {path: /usr, preset: ReadOnly, remove: [inode]}
  - {path: /app/data, attributes: [type, mode]}
exclude:
  - /var/cache/**
  - "**/*.pyc"
  - "**/__pycache__"
  - /usr/share/doc/**
  - /app/node_modules/**/test/**
  - /home/*/.cache
`

func TestMatchDoesNotAllocate(t *testing.T) {
	m := mustCompile(t, benchPolicy)
	paths := append(benchPaths(), "/", "//", "/\xff", "/usr/", "/x/y/z/w/v/u/t/s/r/q/p")
	allocs := testing.AllocsPerRun(20, func() {
		for _, p := range paths {
			m.Match(p)
			m.Descend(p)
		}
	})
	if allocs != 0 {
		t.Errorf("Match and Descend allocate: %v allocations per run of %d paths", allocs, len(paths))
	}
}

func BenchmarkMatch(b *testing.B) {
	m := mustCompile(b, benchPolicy)
	paths := benchPaths()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		m.Match(paths[i])
		if i++; i == len(paths) {
			i = 0
		}
	}
}

func BenchmarkMatchDefault(b *testing.B) {
	m, err := Default().Compile()
	if err != nil {
		b.Fatal(err)
	}
	paths := benchPaths()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Match(paths[i])
		if i++; i == len(paths) {
			i = 0
		}
	}
}

// BenchmarkMatchHostile is a deep path built to make "**" backtrack.
func BenchmarkMatchHostile(b *testing.B) {
	m := mustCompile(b, `
version: 1
rules: [{path: /, preset: ReadOnly}]
exclude: ["/**/a/**/a/**/a/**/b"]
`)
	p := strings.Repeat("/a", 256)
	b.ReportAllocs()
	for b.Loop() {
		if _, skipped := m.Match(p); skipped {
			b.Fatal("matched")
		}
	}
}

// refMatch is the obvious exponential definition of an exclude pattern
// match, to check the fast matcher against: some prefix of the path's
// components matches the pattern's components, with "**" taking any number.
func refMatch(pat, comps []string) bool {
	var full func(pat, comps []string) bool
	full = func(pat, comps []string) bool {
		if len(pat) == 0 {
			return len(comps) == 0
		}
		if pat[0] == "**" {
			for k := 0; k <= len(comps); k++ {
				if full(pat[1:], comps[k:]) {
					return true
				}
			}
			return false
		}
		if len(comps) == 0 {
			return false
		}
		ok, err := path.Match(pat[0], comps[0])
		if err != nil {
			panic(err)
		}
		return ok && full(pat[1:], comps[1:])
	}
	for k := 0; k <= len(comps); k++ {
		if full(pat, comps[:k]) {
			return true
		}
	}
	return false
}

func TestPatternMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	patElems := []string{"**", "a", "b", "ab", "*", "a*", "*b", "a*b", "?", "[ab]", "[^a]", "\xc3\xa9", "*.c", "\\*"}
	pathElems := []string{"a", "b", "ab", "ba", "aab", "x.c", ".c", "\xff", "\xc3\xa9", "*", "abb"}
	matched := 0
	for range 30000 {
		var pat []string
		for range 1 + rng.IntN(5) {
			pat = append(pat, patElems[rng.IntN(len(patElems))])
		}
		src := "/" + strings.Join(pat, "/")
		if pat[0] == "**" && rng.IntN(2) == 0 {
			src = strings.Join(pat, "/")
		}
		cp, err := compilePattern(src)
		if err != nil {
			t.Fatalf("compilePattern(%q): %v", src, err)
		}
		var comps []string
		for range rng.IntN(7) {
			comps = append(comps, pathElems[rng.IntN(len(pathElems))])
		}
		p := "/" + strings.Join(comps, "/")
		got, want := cp.match(p), refMatch(pat, comps)
		if got != want {
			t.Fatalf("pattern %q, path %q: match = %v, want %v", src, p, got, want)
		}
		if got {
			matched++
		}
	}
	if matched < 1000 || matched > 29000 {
		t.Errorf("%d of 30000 cases matched: the generator no longer tests both outcomes", matched)
	}
}

// TestNames: only a recording rule at or beneath a directory names it (the
// scan then enters a pseudo file system mounted there); "/" names no
// mount point beneath it.
func TestNames(t *testing.T) {
	m := mustCompile(t, `
version: 1
rules:
  - {path: /, preset: ReadOnly}
  - {path: /proc, preset: Ignore}
  - {path: /sys/fs/cgroup, preset: ReadOnly}
  - {path: /srv/proc, preset: ReadOnly}
exclude: [/srv/proc/x]
`)
	for dir, want := range map[string]bool{
		"/":                  true,
		"/proc":              false, // Ignore
		"/proc/1":            false,
		"/sys":               true, // a rule beneath it
		"/sys/fs/cgroup":     true,
		"/sys/fs/cgroup/cpu": false, // covered by a rule above it, not named
		"/sys/kernel":        false,
		"/srv/proc":          true,
		"/srv/proc/x":        false, // excluded
		"/dev":               false,
	} {
		if got := m.Names(dir); got != want {
			t.Errorf("Names(%q) = %v, want %v", dir, got, want)
		}
	}
}

// Covers: a recording rule for the path or an ancestor; an Ignore rule
// only inside a recorded tree. A policy of "/" covers everything; one
// that ignores "/" and records /www covers /www only (the e2e tests'
// policy: the app's /hello was "added" and the pod quarantined at start).
func TestCovers(t *testing.T) {
	m := mustCompile(t, `
version: 1
rules:
  - {path: /srv/www, preset: ReadOnly}
  - {path: /srv/www/cache, preset: Ignore}
  - {path: /opt/a/b, preset: Ignore}
`)
	for p, want := range map[string]bool{
		"/":                 false,
		"/srv":              false,
		"/srv/www":          true,
		"/srv/www/x":        true,
		"/srv/www/cache/x":  true, // ignored, yet the policy speaks of it
		"/srv/wwwx":         false,
		"/opt/a/b/c":        false, // an Ignore rule in no recorded tree
		"/hello":            false,
		"/tmp/copied-shell": false,
	} {
		if got := m.Covers(p); got != want {
			t.Errorf("Covers(%q) = %v, want %v", p, got, want)
		}
	}
	whole := mustCompile(t, `
version: 1
rules:
  - {path: /, preset: ReadOnly}
  - {path: /tmp, preset: Ignore}
`)
	for _, p := range []string{"/", "/hello", "/tmp/copied-shell", "/proc/1/exe"} {
		if !whole.Covers(p) {
			t.Errorf("a policy of / does not cover %q", p)
		}
	}
	part := mustCompile(t, `
version: 1
rules:
  - {path: /, preset: Ignore}
  - {path: /www, preset: ReadOnly}
  - {path: /www/cache, preset: Ignore}
`)
	for p, want := range map[string]bool{"/": false, "/hello": false, "/tmp/x": false, "/www": true, "/www/x": true, "/www/cache/x": true, "/wwwx": false} {
		if got := part.Covers(p); got != want {
			t.Errorf("ignore / and record /www: Covers(%q) = %v, want %v", p, got, want)
		}
	}
}
