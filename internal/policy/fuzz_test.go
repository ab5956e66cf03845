package policy

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse checks that Parse never panics, that whatever it accepts is
// valid and compiles, and that writing an accepted policy back out and
// parsing it again gives the same policy (the same digest).
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "../../examples/policy/*.yaml"} {
		files, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(base))
	f.Add([]byte(benchPolicy))
	f.Add([]byte(digestBase))
	f.Add([]byte("version: 1\nrules: [{path: /, preset: ReadOnly, add: [sha512], remove: [sha256]}]\nexclude: [\"**/a/**/b\", \"/x/[^a]?\"]\n"))
	f.Add([]byte("--- {version: 1, rules: [{path: /, attributes: [size, growing]}]}\n..."))

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with an error")
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted a policy that Validate rejects: %v", err)
		}
		m, err := p.Compile()
		if err != nil {
			t.Fatalf("Compile: %v", err)
		}
		for _, path := range []string{"/", "/a", "/a/b/c", "/\xff/\x00", "//x//", "/proc/1/status"} {
			m.Match(path)
			m.Descend(path)
		}
		d := p.Digest()
		if d == "" {
			t.Fatal("empty digest of a valid policy")
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		q, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(p)): %v\n%s", err, out)
		}
		if q.Digest() != d {
			t.Fatalf("digest changed through Marshal and Parse:\n%s", out)
		}
	})
}
