package tamper_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/cli"
)

// TestErrors drives the CLI's error paths: each one must exit with its
// documented status, print nothing on standard output and say on standard
// error what went wrong with which file.
func TestErrors(t *testing.T) {
	isRoot(t) // no scenario here needs root, but the policy is the same for the package
	f := newFixture(t, false)
	f.t = t
	f.makeBaseline(t)
	base := f.base
	file := func(name string) string { return filepath.Join(base, name) }

	// Keys: k1 signs, k2 is another key.
	for _, k := range []string{"k1", "k2"} {
		r := podfim(t, f, "keygen", "--out", file(k))
		if r.code != 0 {
			t.Fatalf("keygen: exit %d: %s", r.code, r.stderr)
		}
		st, err := os.Stat(file(k))
		must(t, err)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("private key %s has mode %v, want 0600", k, st.Mode().Perm())
		}
		_, err = os.Stat(file(k + ".pub"))
		must(t, err)
	}
	signed := file("signed.pfb")
	if r := podfim(t, f, "baseline", "--root", f.root, "--out", signed, "--sign-key", file("k1")); r.code != 0 {
		t.Fatalf("signed baseline: exit %d: %s", r.code, r.stderr)
	}

	// Broken baselines.
	good, err := os.ReadFile(f.baseline)
	must(t, err)
	must(t, os.WriteFile(file("garbage.pfb"), []byte("this is not a podfim baseline\n"), 0o644))
	must(t, os.WriteFile(file("truncated.pfb"), good[:len(good)/2], 0o644))
	must(t, os.WriteFile(file("empty.pfb"), nil, 0o644))
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-10] ^= 0x01 // inside the compressed payload
	must(t, os.WriteFile(file("flipped.pfb"), flipped, 0o644))
	trailing := append(append([]byte(nil), good...), "junk"...)
	must(t, os.WriteFile(file("trailing.pfb"), trailing, 0o644))
	// A signed baseline with a bit of its signature flipped.
	sgood, err := os.ReadFile(signed)
	must(t, err)
	forged := append([]byte(nil), sgood...)
	forged[12+32+5] ^= 0x80 // preamble (magic, version, flags) + public key, then the signature
	must(t, os.WriteFile(file("forged.pfb"), forged, 0o644))

	check := func(baseline string, extra ...string) []string {
		return append([]string{"check", "--root", f.root, "--baseline", baseline, "--format", "json"}, extra...)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		exit     int
		mentions []string // stderr must name these (files, flags)
	}{
		{"missing root", []string{"check", "--root", file("nope"), "--baseline", f.baseline}, 17, []string{file("nope")}},
		{"root is a file", []string{"check", "--root", f.p("/etc/motd"), "--baseline", f.baseline}, 17, []string{f.p("/etc/motd")}},
		{"baseline of a missing root", []string{"baseline", "--root", file("nope"), "--out", file("never.pfb")}, 17, []string{file("nope")}},
		{"baseline into a missing directory", []string{"baseline", "--root", f.root, "--out", file("no/dir/b.pfb")}, 18, []string{file("no/dir/b.pfb")}},
		{"missing baseline", check(file("none.pfb")), 18, []string{file("none.pfb")}},
		{"garbage baseline", check(file("garbage.pfb")), 20, []string{file("garbage.pfb")}},
		{"truncated baseline", check(file("truncated.pfb")), 20, []string{file("truncated.pfb")}},
		{"empty baseline", check(file("empty.pfb")), 20, []string{file("empty.pfb")}},
		{"baseline with a flipped payload byte", check(file("flipped.pfb")), 20, []string{file("flipped.pfb")}},
		{"baseline with trailing bytes", check(file("trailing.pfb")), 20, []string{file("trailing.pfb")}},
		{"signed baseline, another key", check(signed, "--verify-key", file("k2.pub")), 21, []string{signed}},
		{"unsigned baseline, key required", check(f.baseline, "--verify-key", file("k1.pub")), 21, []string{f.baseline}},
		{"forged signature", check(file("forged.pfb")), 21, []string{file("forged.pfb")}},
		{"forged signature, key required", check(file("forged.pfb"), "--verify-key", file("k1.pub")), 21, []string{file("forged.pfb")}},
		{"missing verify key", check(signed, "--verify-key", file("nope.pub")), 18, []string{file("nope.pub")}},
		{"format yaml", check(f.baseline, "--format", "yaml"), 15, []string{"--format", "yaml"}},
		{"unknown flag", check(f.baseline, "--frobnicate"), 15, []string{"--frobnicate"}},
		{"missing --baseline", []string{"check", "--root", f.root}, 15, []string{"baseline"}},
		{"missing --root", []string{"check", "--baseline", f.baseline}, 15, []string{"root"}},
		{"negative workers", check(f.baseline, "--workers", "-1"), 15, []string{"--workers"}},
		{"missing policy file", check(f.baseline, "--policy", file("nope.yaml")), 16, []string{file("nope.yaml")}},
		{"keygen refuses to overwrite", []string{"keygen", "--out", file("k1")}, 18, []string{file("k1")}},
		{"unknown command", []string{"frobnicate"}, 15, []string{"frobnicate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := podfim(t, f, tc.args...)
			if r.code != tc.exit {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.exit, r.stdout, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("an error wrote to stdout:\n%s", r.stdout)
			}
			if !strings.HasPrefix(r.stderr, "podfim: ") || strings.Count(strings.TrimSuffix(r.stderr, "\n"), "\n") > 3 {
				t.Errorf("stderr is not a short 'podfim: ...' message:\n%s", r.stderr)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("stderr does not mention %q:\n%s", m, r.stderr)
				}
			}
		})
	}
	if _, err := os.Lstat(file("never.pfb")); err == nil {
		t.Errorf("baseline of a missing root left %s behind", file("never.pfb"))
	}

	t.Run("signed baseline, its key", func(t *testing.T) {
		r := podfim(t, f, check(signed, "--verify-key", file("k1.pub"))...)
		if r.code != 0 {
			t.Fatalf("exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
		}
		var rep jsonReport
		must(t, json.Unmarshal([]byte(r.stdout), &rep))
		if s := rep.Summary; !s.Signed || !s.Verified || s.KeyID == "" || s.Total != 0 {
			t.Errorf("summary signed=%v verified=%v key_id=%q total=%d, want a verified signature and no findings",
				s.Signed, s.Verified, s.KeyID, s.Total)
		}
	})
	t.Run("private key file as verify key", func(t *testing.T) {
		// Documented: LoadPublicKey derives the public key from a private
		// key file.
		r := podfim(t, f, check(signed, "--verify-key", file("k1"))...)
		if r.code != 0 {
			t.Fatalf("exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
		}
	})
	t.Run("signed baseline, no key given", func(t *testing.T) {
		r := podfim(t, f, check(signed)...)
		if r.code != 0 {
			t.Fatalf("exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
		}
		var rep jsonReport
		must(t, json.Unmarshal([]byte(r.stdout), &rep))
		if s := rep.Summary; !s.Signed || s.Verified {
			t.Errorf("summary signed=%v verified=%v, want signed and not verified against a given key", s.Signed, s.Verified)
		}
	})
	t.Run("check with a FIFO in the tree does not hang", func(t *testing.T) {
		// Every check of every scenario has a FIFO in its tree; this one
		// adds FIFOs where a scanner that opens by name first would trip.
		f.mkfifo("/bin/zzz-fifo")
		f.mkfifo("/srv/www/index.htm")
		code, rep := f.check(t, false)
		if code != 5 {
			t.Errorf("exit %d, want 5", code)
		}
		assertFindings(t, rep, []want{
			added("/bin/zzz-fifo"), added("/srv/www/index.htm"), dirTouched("/bin"), dirTouched("/srv/www"),
		})
	})
}

// TestRootForms checks that the root may be named in the ways operators
// name it: through a symlink (as /proc/<pid>/root is) and with a trailing
// slash; only links inside the tree are never followed.
func TestRootForms(t *testing.T) {
	isRoot(t)
	f := newFixture(t, false)
	f.t = t
	f.makeBaseline(t)
	link := filepath.Join(f.base, "rootlink")
	must(t, os.Symlink(f.root, link))
	for name, root := range map[string]string{"symlink": link, "trailing slash": f.root + "/", "symlink and slash": link + "/"} {
		t.Run(name, func(t *testing.T) {
			r := podfim(t, f, "check", "--root", root, "--baseline", f.baseline, "--format", "json")
			if r.code != 0 {
				t.Errorf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestInterrupted checks that a check whose context is already cancelled
// (SIGINT, SIGTERM) exits 130 without a report.
func TestInterrupted(t *testing.T) {
	isRoot(t)
	f := newFixture(t, false)
	f.t = t
	f.makeBaseline(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := cli.Run(ctx, []string{"check", "--root", f.root, "--baseline", f.baseline, "--format", "json"}, &stdout, &stderr)
	if code != 130 {
		t.Errorf("exit %d, want 130\nstderr:\n%s", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("an interrupted check wrote a report:\n%s", stdout.String())
	}
}

// TestUpdate checks the accept-the-changes flow: update reports what
// changed, exits 0, and the next check finds nothing; a signed baseline
// stays signed or is refused.
func TestUpdate(t *testing.T) {
	isRoot(t)
	f := newFixture(t, false)
	f.t = t
	key := filepath.Join(f.base, "k")
	if r := podfim(t, f, "keygen", "--out", key); r.code != 0 {
		t.Fatalf("keygen: exit %d: %s", r.code, r.stderr)
	}
	f.makeBaseline(t, "--sign-key", key)
	f.write("/etc/motd", "rolled out\n", 0o644)
	f.remove("/data/blob")

	r := podfim(t, f, "update", "--root", f.root, "--baseline", f.baseline, "--format", "json")
	if r.code != 15 || !strings.Contains(r.stderr, "--sign-key") {
		t.Errorf("update of a signed baseline without a key: exit %d, want 15 with a hint at --sign-key\nstderr:\n%s", r.code, r.stderr)
	}
	r = podfim(t, f, "update", "--root", f.root, "--baseline", f.baseline, "--format", "json", "--sign-key", key)
	if r.code != 0 {
		t.Fatalf("update: exit %d, want 0\nstderr:\n%s", r.code, r.stderr)
	}
	var rep jsonReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("update --format json: stdout is not one JSON document: %v\n%s", err, r.stdout)
	}
	assertFindings(t, &rep, []want{
		changed("/etc/motd", "size", "mtime", "ctime", "sha256"), removed("/data/blob"), dirTouched("/data"),
	})
	code, rep2 := f.check(t, false, "--verify-key", key+".pub")
	if code != 0 || len(rep2.Findings) != 0 || !rep2.Summary.Verified {
		t.Errorf("check after update: exit %d, %d findings, verified=%v; want 0, none, true", code, len(rep2.Findings), rep2.Summary.Verified)
	}
}
