package policy

import (
	"regexp"
	"testing"
)

const digestBase = `version: 1
hash: sha256
rules:
  - path: /
    preset: ReadOnly
  - path: /var/log
    preset: Growing
  - path: /etc
    attributes: [type, mode, uid, gid, sha512]
  - path: /tmp
    preset: Ignore
exclude:
  - /proc
  - "**/*.pyc"
limits:
  maxFiles: 1000
`

func digestOf(t *testing.T, doc string) string {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse(%q): %v", doc, err)
	}
	return p.Digest()
}

func TestDigestFormat(t *testing.T) {
	d := digestOf(t, digestBase)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(d) {
		t.Errorf("Digest = %q, want 64 hex digits", d)
	}
	if a, b := Default(), Default(); d != digestOf(t, digestBase) || a.Digest() != b.Digest() {
		t.Error("Digest is not deterministic")
	}
}

func TestDigestSamePolicy(t *testing.T) {
	want := digestOf(t, digestBase)
	for name, doc := range map[string]string{
		"flow style and comments": `# the same policy
{version: 1, hash: sha256, limits: {maxFiles: 1000},
 rules: [{preset: ReadOnly, path: /}, {path: /var/log, preset: Growing},
         {path: /etc, attributes: [type, mode, uid, gid, sha512]}, {path: /tmp, preset: Ignore}],
 exclude: [/proc, "**/*.pyc"]}`,
		"JSON": `{"version":1,"rules":[{"path":"/","preset":"ReadOnly"},{"path":"/var/log","preset":"Growing"},
{"path":"/etc","attributes":["type","mode","uid","gid","sha512"]},{"path":"/tmp","preset":"Ignore"}],
"exclude":["/proc","**/*.pyc"],"limits":{"maxFiles":1000}}`,
		"default hash and limits spelled out": `version: 1
rules:
  - {path: /, preset: ReadOnly}
  - {path: /var/log, preset: Growing}
  - {path: /etc, attributes: [type, mode, uid, gid, sha512]}
  - {path: /tmp, preset: Ignore}
exclude: [/proc, "**/*.pyc"]
limits: {maxFiles: 1000, maxDepth: 256, maxFileBytes: 68719476736, maxFindings: 100000}
`,
		"rules and excludes reordered, attributes reordered": `version: 1
rules:
  - {path: /tmp, preset: Ignore}
  - {path: /etc, attributes: [sha512, gid, uid, mode, type]}
  - {path: /var/log, preset: Growing}
  - {path: /, preset: ReadOnly}
exclude: ["**/*.pyc", /proc]
limits: {maxFiles: 1000}
`,
		"presets spelled as attributes, excludes in another form": `version: 1
hash: blake3
rules:
  - {path: /, attributes: [type, mode, uid, gid, size, inode, nlink, target, mtime, ctime, xattrs, sha256]}
  - {path: /var/log, preset: ReadOnly, add: [growing, sha256], remove: [blake3, target, mtime, ctime]}
  - {path: /etc, attributes: [type, mode, uid, gid, sha512]}
  - {path: /tmp, preset: Ignore}
exclude: [/proc/**, "/**/*.pyc"]
limits: {maxFiles: 1000}
`,
	} {
		if got := digestOf(t, doc); got != want {
			t.Errorf("%s: digest %s, want %s", name, got, want)
		}
	}
}

func TestDigestChanges(t *testing.T) {
	base := digestOf(t, digestBase)
	seen := map[string]string{base: "base"}
	for name, doc := range map[string]string{
		"hash":            replace(t, digestBase, "hash: sha256", "hash: sha512"),
		"rule path":       replace(t, digestBase, "path: /var/log", "path: /var/logs"),
		"preset":          replace(t, digestBase, "preset: Growing", "preset: ReadOnly"),
		"ignore":          replace(t, digestBase, "preset: Ignore", "preset: ReadOnly"),
		"attribute":       replace(t, digestBase, "sha512]", "sha256]"),
		"attribute gone":  replace(t, digestBase, "gid, sha512]", "sha512]"),
		"add":             replace(t, digestBase, "preset: Growing", "preset: Growing\n    add: [target]"),
		"remove":          replace(t, digestBase, "preset: Growing", "preset: Growing\n    remove: [inode]"),
		"extra rule":      digestBase[:len("version: 1\nhash: sha256\nrules:\n")] + "  - {path: /srv, preset: Ignore}\n" + digestBase[len("version: 1\nhash: sha256\nrules:\n"):],
		"exclude":         replace(t, digestBase, "- /proc", "- /proc/1"),
		"exclude removed": replace(t, digestBase, "  - /proc\n", ""),
		"exclude added":   replace(t, digestBase, "  - /proc\n", "  - /proc\n  - /sys\n"),
		"maxFiles":        replace(t, digestBase, "maxFiles: 1000", "maxFiles: 1001"),
		"maxDepth":        digestBase + "  maxDepth: 255\n",
		"maxFileBytes":    digestBase + "  maxFileBytes: 1\n",
		"maxFindings":     digestBase + "  maxFindings: 1\n",
	} {
		d := digestOf(t, doc)
		if other, dup := seen[d]; dup {
			t.Errorf("%s: same digest as %s", name, other)
		}
		seen[d] = name
	}
}

func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	r := regexp.MustCompile(regexp.QuoteMeta(old))
	if !r.MatchString(s) {
		t.Fatalf("%q not in the base policy", old)
	}
	return r.ReplaceAllLiteralString(s, new)
}
