package policy

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

func TestParseEveryField(t *testing.T) {
	p, err := Parse([]byte(`
# comments are fine
version: 1
hash: blake3
rules:
  - path: /
    preset: ReadOnly
  - path: /var/log
    preset: Growing
    add: [target]
  - path: /etc
    attributes: [type, mode, uid, gid, sha512]
  - path: /usr
    preset: ReadOnly
    remove: [inode, ctime]
  - path: /tmp
    preset: Ignore
exclude:
  - /proc
  - "**/*.pyc"
  - /var/cache/**
limits:
  maxFiles: 1000
  maxDepth: 32
  maxFileBytes: 68719476736
  maxFindings: 50
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		Version: 1,
		Hash:    "blake3",
		Rules: []Rule{
			{Path: "/", Preset: "ReadOnly"},
			{Path: "/var/log", Preset: "Growing", Add: []string{"target"}},
			{Path: "/etc", Attributes: []string{"type", "mode", "uid", "gid", "sha512"}},
			{Path: "/usr", Preset: "ReadOnly", Remove: []string{"inode", "ctime"}},
			{Path: "/tmp", Preset: "Ignore"},
		},
		Exclude: []string{"/proc", "**/*.pyc", "/var/cache/**"},
		Limits:  Limits{MaxFiles: 1000, MaxDepth: 32, MaxFileBytes: 64 << 30, MaxFindings: 50},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", p, want)
	}

	m, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	checkMatches(t, m, []matchCase{
		{"/bin/sh", attr.All&^attr.SHA256 | attr.BLAKE3},
		{"/var/log/x", growing&^attr.SHA256 | attr.BLAKE3 | attr.Target},
		{"/etc/passwd", attr.Type | attr.Mode | attr.UID | attr.GID | attr.SHA512},
		{"/usr/bin/ls", attr.All&^(attr.SHA256|attr.Inode|attr.Ctime) | attr.BLAKE3},
		{"/tmp/x", skip},
		{"/proc/1", skip},
		{"/a/b.pyc", skip},
		{"/var/cache", skip},
	})
	if got := m.Limits(); got != want.Limits {
		t.Errorf("Limits() = %+v, want %+v", got, want.Limits)
	}
}

func TestParseDefaults(t *testing.T) {
	for _, doc := range []string{
		"version: 1\nrules: [{path: /, preset: ReadOnly}]\n",
		"version: 1\nrules: [{path: /, preset: ReadOnly}]\nlimits: {}\n",
		"version: 1\nrules: [{path: /, preset: ReadOnly}]\nlimits:\nexclude:\n",
		`{"version": 1, "rules": [{"path": "/", "preset": "ReadOnly"}]}`, // JSON is YAML
		"---\nversion: 1\nrules: [{path: /, preset: ReadOnly}]\n...\n",
		"%YAML 1.1\n--- # a comment\nversion: 1\nrules: [{path: /, preset: ReadOnly}]\n",
		"--- {version: 1, rules: [{path: /, preset: ReadOnly}]}\n",
	} {
		p, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", doc, err)
			continue
		}
		if p.Hash != "sha256" || p.Limits != DefaultLimits() || len(p.Exclude) != 0 {
			t.Errorf("Parse(%q) = %+v, want hash sha256, the default limits and no excludes", doc, p)
		}
	}
	// Some limits given, the others default.
	p, err := Parse([]byte("version: 1\nrules: [{path: /, preset: ReadOnly}]\nlimits: {maxDepth: 8}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultLimits()
	want.MaxDepth = 8
	if p.Limits != want {
		t.Errorf("Limits = %+v, want %+v", p.Limits, want)
	}
}

func TestPresets(t *testing.T) {
	for _, c := range []struct {
		hash, preset string
		add, remove  []string
		want         attr.Set
	}{
		{"sha256", "ReadOnly", nil, nil, attr.Type | attr.Mode | attr.UID | attr.GID | attr.Size | attr.Inode |
			attr.Nlink | attr.Target | attr.Mtime | attr.Ctime | attr.Xattrs | attr.SHA256},
		{"sha512", "ReadOnly", nil, nil, attr.All&^attr.SHA256 | attr.SHA512},
		{"blake3", "ReadOnly", nil, nil, attr.All&^attr.SHA256 | attr.BLAKE3},
		{"sha256", "Growing", nil, nil, attr.Type | attr.Mode | attr.UID | attr.GID | attr.Inode | attr.Nlink |
			attr.Xattrs | attr.Size | attr.SHA256 | attr.Growing},
		{"blake3", "Growing", nil, nil, attr.Type | attr.Mode | attr.UID | attr.GID | attr.Inode | attr.Nlink |
			attr.Xattrs | attr.Size | attr.BLAKE3 | attr.Growing},
		{"sha256", "ReadOnly", []string{"growing"}, nil, attr.All | attr.Growing},
		{"sha256", "ReadOnly", nil, []string{"inode", "nlink"}, attr.All &^ (attr.Inode | attr.Nlink)},
		{"sha256", "ReadOnly", []string{"sha512"}, []string{"sha256"}, attr.All&^attr.SHA256 | attr.SHA512},
		{"sha256", "ReadOnly", nil, []string{"sha256"}, attr.All &^ attr.SHA256},
		{"sha256", "Growing", []string{"target", "mtime"}, []string{"growing"},
			growing&^attr.Growing | attr.Target | attr.Mtime},
	} {
		p := &Policy{Version: 1, Hash: c.hash, Limits: DefaultLimits(),
			Rules: []Rule{{Path: "/", Preset: c.preset, Add: c.add, Remove: c.remove}}}
		m, err := p.Compile()
		if err != nil {
			t.Errorf("%s %s +%v -%v: %v", c.hash, c.preset, c.add, c.remove, err)
			continue
		}
		if got, skipped := m.Match("/x"); skipped || got != c.want {
			t.Errorf("%s %s +%v -%v = %v (skip %v), want %v", c.hash, c.preset, c.add, c.remove, got, skipped, c.want)
		}
	}
	// Ignore records nothing.
	p := &Policy{Version: 1, Hash: "sha256", Limits: DefaultLimits(), Rules: []Rule{{Path: "/", Preset: "Ignore"}}}
	m, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if got, skipped := m.Match("/x"); !skipped || got != 0 {
		t.Errorf("Ignore: Match = %v, %v; want 0, skip", got, skipped)
	}
}

// base is a valid policy that the error cases below break one piece at a time.
const base = "version: 1\nrules:\n  - {path: /, preset: ReadOnly}\n"

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		want      []string // each must appear in the error
	}{
		{"empty", "", []string{"empty policy"}},
		{"comments only", "# nothing\n", []string{"empty policy"}},
		{"not a mapping", "- a\n", []string{"want a mapping, got a list"}},
		{"invalid yaml", "version: [1\n", []string{"invalid YAML"}},
		{"duplicate key", "version: 1\nversion: 1\nrules: [{path: /, preset: ReadOnly}]\n",
			[]string{"invalid YAML", `key "version" already set`}},
		{"duplicate key in rule", "version: 1\nrules: [{path: /, path: /x, preset: ReadOnly}]\n",
			[]string{`key "path" already set`}},
		{"second document", base + "---\nversion: 1\n", []string{"line 4: a second YAML document"}},
		{"content after end", base + "...\nversion: 2\n", []string{"line 5: content after the end"}},
		{"unknown field", base + "rulez: []\n", []string{`unknown field "rulez"`, "known: exclude, hash, limits, rules, version"}},
		{"miscased field", "Version: 1\nrules: [{path: /, preset: ReadOnly}]\n", []string{`unknown field "Version" (did you mean "version"?)`}},
		{"unknown rule field", "version: 1\nrules: [{path: /, preset: ReadOnly, presets: x}]\n", []string{`rules[0]: unknown field "presets"`}},
		{"miscased rule field", "version: 1\nrules: [{path: /, Preset: ReadOnly}]\n", []string{`rules[0]: unknown field "Preset" (did you mean "preset"?)`}},
		{"unknown limit", base + "limits: {maxfiles: 3}\n", []string{`limits: unknown field "maxfiles" (did you mean "maxFiles"?)`}},
		{"missing version", "rules: [{path: /, preset: ReadOnly}]\n", []string{"version: missing (want 1)"}},
		{"version 2", "version: 2\nrules: [{path: /, preset: ReadOnly}]\n", []string{"version: unsupported version 2 (want 1)"}},
		{"version string", "version: \"1\"\nrules: [{path: /, preset: ReadOnly}]\n", []string{`version: want an integer, got the string "1"`}},
		{"version float", "version: 1.5\nrules: [{path: /, preset: ReadOnly}]\n", []string{"version: want an integer, got 1.5"}},
		{"unknown hash", base + "hash: md5\n", []string{`hash: unknown hash "md5" (want sha256, sha512 or blake3)`}},
		{"empty hash", base + "hash: \"\"\n", []string{`hash: unknown hash ""`}},
		{"no rules", "version: 1\n", []string{"rules: no rules"}},
		{"empty rules", "version: 1\nrules: []\n", []string{"rules: no rules"}},
		{"rules not a list", "version: 1\nrules: {path: /}\n", []string{"rules: want a list, got a mapping"}},
		{"rule not a mapping", "version: 1\nrules: [/etc]\n", []string{`rules[0]: want a mapping, got the string "/etc"`}},
		{"missing path", "version: 1\nrules: [{preset: ReadOnly}]\n", []string{"rules[0].path: missing"}},
		{"relative path", base + "  - {path: etc, preset: ReadOnly}\n", []string{`rules[1].path: "etc" is relative (want an absolute path such as "/etc")`}},
		{"unclean path", base + "  - {path: /etc/, preset: ReadOnly}\n", []string{`rules[1].path: "/etc/" is not clean (want "/etc")`}},
		{"dotdot path", base + "  - {path: /etc/../x, preset: ReadOnly}\n", []string{`rules[1].path: "/etc/../x" is not clean (want "/x")`}},
		{"nul in path", base + "  - {path: \"/a\\0b\", preset: ReadOnly}\n", []string{`rules[1].path: "/a\x00b" contains a NUL byte`}},
		{"duplicate path", base + "  - {path: /etc, preset: ReadOnly}\n  - {path: /etc, preset: Growing}\n",
			[]string{`rules[2].path: duplicate path "/etc" (also rules[1])`}},
		{"unknown preset", base + "  - {path: /a, preset: ReadOnly}\n  - {path: /b, preset: Readonly}\n",
			[]string{`rules[2].preset: unknown preset "Readonly" (want ReadOnly, Growing or Ignore)`}},
		{"yes as preset", "version: 1\nrules: [{path: /, preset: yes}]\n", []string{"rules[0].preset: want a string, got true"}},
		{"no preset nor attributes", "version: 1\nrules: [{path: /}]\n", []string{"rules[0]: needs a preset or attributes"}},
		{"preset and attributes", "version: 1\nrules: [{path: /, preset: ReadOnly, attributes: [type]}]\n",
			[]string{"rules[0]: has both preset and attributes"}},
		{"empty attributes", "version: 1\nrules: [{path: /, attributes: []}]\n", []string{"rules[0].attributes: empty"}},
		{"attributes not a list", "version: 1\nrules: [{path: /, attributes: type}]\n", []string{`rules[0].attributes: want a list, got the string "type"`}},
		{"unknown attribute", "version: 1\nrules: [{path: /, attributes: [type, atime]}]\n",
			[]string{`rules[0].attributes[1]: unknown attribute "atime"`}},
		{"repeated attribute", "version: 1\nrules: [{path: /, attributes: [type, type]}]\n", []string{`rules[0].attributes[1]: "type" is listed twice`}},
		{"two hashes", "version: 1\nrules: [{path: /, attributes: [type, sha256, blake3]}]\n",
			[]string{"rules[0]: more than one hash (sha256+blake3)"}},
		{"growing without size", "version: 1\nrules: [{path: /, attributes: [type, growing]}]\n", []string{"rules[0]: growing requires size"}},
		{"add with attributes", "version: 1\nrules: [{path: /, attributes: [type], add: [mode]}]\n", []string{"rules[0]: add and remove adjust a preset"}},
		{"add to Ignore", "version: 1\nrules: [{path: /, preset: Ignore, remove: [mode]}]\n", []string{"rules[0]: add and remove do not apply to preset Ignore"}},
		{"add unknown", "version: 1\nrules: [{path: /, preset: ReadOnly, add: [acl]}]\n", []string{`rules[0].add[0]: unknown attribute "acl"`}},
		{"add present", "version: 1\nrules: [{path: /, preset: ReadOnly, add: [mode]}]\n", []string{`rules[0].add[0]: "mode" is already in preset ReadOnly`}},
		{"remove absent", "version: 1\nrules: [{path: /, preset: Growing, remove: [mtime]}]\n",
			[]string{`rules[0].remove[0]: "mtime" is not in preset Growing`}},
		{"remove the other hash", "version: 1\nhash: blake3\nrules: [{path: /, preset: ReadOnly, remove: [sha256]}]\n",
			[]string{`rules[0].remove[0]: "sha256" is not in preset ReadOnly`}},
		{"add and remove", "version: 1\nrules: [{path: /, preset: ReadOnly, add: [growing], remove: [growing]}]\n",
			[]string{"rules[0]: growing is in both add and remove"}},
		{"add a second hash", "version: 1\nrules: [{path: /, preset: ReadOnly, add: [sha512]}]\n",
			[]string{"rules[0]: more than one hash (sha256+sha512)", "remove it, or set the policy's hash"}},
		{"remove size from Growing", "version: 1\nrules: [{path: /, preset: Growing, remove: [size]}]\n",
			[]string{"rules[0]: growing requires size"}},
		{"remove everything", "version: 1\nrules: [{path: /, preset: Growing, remove: [type, mode, uid, gid, inode, nlink, xattrs, size, sha256, growing]}]\n",
			[]string{"rules[0]: no attributes left"}},
		{"exclude not a list", base + "exclude: /proc\n", []string{`exclude: want a list, got the string "/proc"`}},
		{"exclude relative", base + "exclude: [\"*.pyc\"]\n", []string{`exclude[0]: "*.pyc" must start with "/"`}},
		{"exclude empty", base + "exclude: [\"\"]\n", []string{"exclude[0]: empty pattern"}},
		{"exclude double slash", base + "exclude: [/a//b]\n", []string{`exclude[0]: "/a//b" has an empty component`}},
		{"exclude trailing slash", base + "exclude: [/a/]\n", []string{`exclude[0]: "/a/" has an empty component`}},
		{"exclude dotdot", base + "exclude: [/a/../b]\n", []string{`exclude[0]: "/a/../b" has a ".." component`}},
		{"exclude bad class", base + "exclude: [\"/a/[b\"]\n", []string{`exclude[0]: "/a/[b": bad glob "[b": syntax error in pattern`}},
		{"exclude trailing escape", base + "exclude: [\"/a/b\\\\\"]\n", []string{`exclude[0]: "/a/b\\": bad glob`}},
		{"exclude partial doublestar", base + "exclude: [\"/a/b**\"]\n", []string{`exclude[0]: "/a/b**": "**" must be a whole component`}},
		{"duplicate exclude", base + "exclude: [/a, /b, /a]\n", []string{`exclude[2]: duplicate pattern "/a" (also exclude[0])`}},
		{"rule under exclude", base + "  - {path: /proc/x, preset: ReadOnly}\nexclude: [/proc]\n",
			[]string{`rules[1].path: "/proc/x" is excluded by exclude[0] "/proc", so the rule never applies`}},
		{"rule matching exclude", base + "  - {path: /var/cache, attributes: [type]}\nexclude: [/a//b, /var/cache/**]\n",
			[]string{`rules[1].path: "/var/cache" is excluded by exclude[1] "/var/cache/**"`}},
		{"zero limit", base + "limits: {maxFiles: 0}\n", []string{"limits.maxFiles: must be positive, got 0 (the default is 5000000)"}},
		{"negative limits", base + "limits: {maxDepth: -1, maxFileBytes: -5, maxFindings: 0}\n",
			[]string{"limits.maxDepth: must be positive, got -1", "limits.maxFileBytes: must be positive, got -5", "limits.maxFindings: must be positive, got 0"}},
		{"limit not an integer", base + "limits: {maxFiles: many}\n", []string{`limits.maxFiles: want an integer, got the string "many"`}},
		{"limit overflow", base + "limits: {maxFileBytes: 99999999999999999999}\n", []string{"limits.maxFileBytes: want an integer"}},
		{"limit float", base + "limits: {maxFiles: 2.5}\n", []string{"limits.maxFiles: want an integer, got 2.5"}},
		{"several problems", "version: 3\nhash: md4\nrules: [{path: x, preset: Nope}]\n",
			[]string{"version: unsupported version 3", `hash: unknown hash "md4"`, `rules[0].path: "x" is relative`, `rules[0].preset: unknown preset "Nope"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", c.doc, p)
			}
			if p != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	// A Policy made in code is checked like a parsed one.
	p := Default()
	p.Limits = Limits{}
	p.Rules = append(p.Rules, Rule{Path: "/\xff", Preset: PresetReadOnly})
	p.Exclude = []string{"/a\xff"}
	err := p.Validate()
	for _, w := range []string{"limits.maxFiles: must be positive", `is not valid UTF-8`, "exclude[0]"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to mention %q", err, w)
		}
	}
	if _, err := p.Compile(); err == nil {
		t.Error("Compile accepted an invalid policy")
	}
	if d := p.Digest(); d != "" {
		t.Errorf("Digest of an invalid policy = %q, want \"\"", d)
	}
}

func TestParseTooLarge(t *testing.T) {
	doc := base + "# " + strings.Repeat("x", maxPolicyBytes) + "\n"
	if _, err := Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Errorf("Parse of a huge policy: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(base+"  - {path: /x, preset: Readonly}\nhash: md5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(good); err != nil {
		t.Errorf("Load(good): %v", err)
	}
	_, err := Load(bad)
	if err == nil {
		t.Fatal("Load(bad) succeeded")
	}
	for _, w := range []string{bad, `rules[1].preset: unknown preset "Readonly"`, "\n  hash: unknown hash"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Load(bad) = %v, want it to mention %q", err, w)
		}
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}
}

// TestExamples parses the policies shipped in examples/policy: they must
// stay valid, and container.yaml must stay the same policy as Default.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/policy/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d example policies, want at least 3", len(files))
	}
	for _, f := range files {
		p, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if filepath.Base(f) == "container.yaml" && p.Digest() != Default().Digest() {
			t.Errorf("%s is no longer the same policy as Default()", f)
		}
	}
}

// probes are the paths every golden file reports on.
var probes = []string{
	"/", "/etc/passwd", "/etc/hosts", "/usr/bin/ls", "/usr/lib/python3/x.pyc", "/var/log/app.log",
	"/var/log/nginx/access.log", "/var/cache/apt", "/proc/1/status", "/tmp/x", "/srv",
	"/srv/www/index.html", "/app/server", "/app/uploads/a.png", "/home/u/.cache/x", "/\xff",
}

// TestGolden compiles each testdata/*.yaml and compares a description of
// the result (digest, rules, limits, what each probe path gets) with the
// matching .golden file. Run with -update to rewrite them after an intended
// change; a changed digest means every stored baseline will report that its
// policy changed.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			got := describePolicy(t, p)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s changed (go test -update rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func describePolicy(t *testing.T, p *Policy) string {
	m, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "digest %s\n", p.Digest())
	fmt.Fprintf(&b, "limits %+v\n", m.Limits())
	for _, r := range m.rules {
		if r.ignore {
			fmt.Fprintf(&b, "rule %s ignore\n", r.path)
		} else {
			fmt.Fprintf(&b, "rule %s %s\n", r.path, r.attrs)
		}
	}
	for _, e := range m.exclude {
		fmt.Fprintf(&b, "exclude %s (%s)\n", e.src, e.canonical())
	}
	for _, pr := range probes {
		attrs, skipped := m.Match(pr)
		what := attrs.String()
		if skipped {
			what = "skip"
		}
		fmt.Fprintf(&b, "match %q %s descend=%v\n", pr, what, m.Descend(pr))
	}
	return b.String()
}
