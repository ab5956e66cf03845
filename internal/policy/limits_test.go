package policy

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// siblings is a valid policy of n rules side by side under "/".
func siblings(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n- {path: /, preset: ReadOnly}\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "- {path: /d%d, preset: Ignore}\n", i)
	}
	return b.String()
}

// deepGlob is the input that stalled FuzzParse: a rule path of n components
// checked against a pattern of n/2, which cost n²/2 steps (2.5 s at
// n = 16,000, a 48 KB file; a fuzz worker is killed after 10 s).
func deepGlob(n int) string {
	return "version: 1\nrules: [{path: /, preset: ReadOnly}, {path: '/" + strings.Repeat("a/", n) + "a', preset: ReadOnly}]\n" +
		"exclude: ['**/" + strings.Repeat("a/", n/2) + "b']\n"
}

func TestParseLimits(t *testing.T) {
	many := func(field, item string, n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "version: 1\nrules: [{path: /, preset: ReadOnly}]\n%s:\n", field)
		for i := range n {
			fmt.Fprintf(&b, "- %s\n", fmt.Sprintf(item, i))
		}
		return b.String()
	}
	rules := func(n int) string {
		return strings.Replace(many("rules", "{path: /d%d, preset: Ignore}", n), "rules: [{path: /, preset: ReadOnly}]\n", "", 1)
	}
	name := strings.Repeat("n", maxNameBytes)
	for _, tc := range []struct {
		name, doc, want string // want "" means accepted
	}{
		{"rules at the limit", rules(maxRules), ""},
		{"rules over the limit", rules(maxRules + 1), "rules: 4097 rules, more than the limit of 4096"},
		{"excludes at the limit", many("exclude", "/x%d", maxExcludes), ""},
		{"excludes over the limit", many("exclude", "/x%d", maxExcludes+1), "exclude: 1025 patterns, more than the limit of 1024"},
		{"rule path at PATH_MAX", "version: 1\nrules: [{path: /" + strings.Repeat(name+"/", 15) + strings.Repeat("p", 255) + ", preset: ReadOnly}]\n", ""},
		{"rule path over PATH_MAX", "version: 1\nrules: [{path: /" + strings.Repeat("a/", 2048) + "a, preset: ReadOnly}]\n",
			"rules[0].path: 4098 bytes, more than the limit of 4096 (PATH_MAX)"},
		{"rule name at NAME_MAX", "version: 1\nrules: [{path: /" + name + ", preset: ReadOnly}]\n", ""},
		{"rule name over NAME_MAX", "version: 1\nrules: [{path: /" + name + "n, preset: ReadOnly}]\n",
			"rules[0].path: a component of 256 bytes (\"nnnn"},
		{"pattern over PATH_MAX", many("exclude", "/"+strings.Repeat("a/", 2048)+"%d", 1), "exclude[0]: 4098 bytes, more than the limit of 4096 (PATH_MAX)"},
		{"pattern name over NAME_MAX", many("exclude", "/*"+name+"%d", 1), "exclude[0]: \"/*nnnn"},
		{"pattern components at the limit", many("exclude", "/"+strings.Repeat("*/", maxPatternComponents-1)+"%d", 1), ""},
		{"pattern components over the limit", many("exclude", "/"+strings.Repeat("*/", maxPatternComponents)+"%d", 1), "more than 64 components"},
		{"deep glob", deepGlob(16000), "rules[1].path: 32002 bytes, more than the limit of 4096"},
		{"cross-check over the limit", crossCheck(9), "exclude: 36864 bytes of recording rule paths and 2048 bytes of patterns: too many to check"},
		{"cross-check at the limit", crossCheck(8), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.doc))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %.500v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("err = %.500v\nwant it to contain %q", err, tc.want)
			case tc.want != "" && strings.Count(err.Error(), "\n") > 2:
				t.Errorf("%d lines of errors for one oversized input", strings.Count(err.Error(), "\n")+1)
			case tc.want == "":
				if _, err := p.Compile(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// crossCheck is a policy of n recording rules of 4,096 bytes and two
// patterns of 1,024 bytes (64 components): n × 4096 × 2048 against maxCrossCheck.
func crossCheck(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i := range n {
		fmt.Fprintf(&b, "- {path: '/%c%s', preset: ReadOnly}\n", 'a'+i, strings.Repeat("/x", 2047))
	}
	b.WriteString("exclude:\n")
	for i := range 2 {
		fmt.Fprintf(&b, "- '/%c%s/%s'\n", 'A'+i, strings.Repeat("/"+strings.Repeat("y", 15), 62), strings.Repeat("z", 29))
	}
	return b.String()
}

// TestCompileLinear: compiling n sibling rules allocates in proportion to
// n. The tree used to rebuild a node's index on every child it gained, n²/2
// map entries in all (16,000 rules: 36 s to parse).
func TestCompileLinear(t *testing.T) {
	const n = maxRules
	p, err := Parse([]byte(siblings(n)))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := p.Compile(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	// About 1 KB a rule today (the node, its index entry, the error-free
	// checks); the quadratic tree allocated over 100 MB here.
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Errorf("Compile of %d sibling rules allocated %d bytes", n, got)
	}
}
