package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/baseline/baselinetest"
	"github.com/podfim/podfim/internal/policy"
)

// runChild runs podfim in a child process and returns its exit status,
// output and peak RSS (its VmHWM, in bytes; see TestMain).
func runChild(t *testing.T, args ...string) (code int, out, errOut string, peak int64) {
	t.Helper()
	hwm := filepath.Join(t.TempDir(), "hwm")
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PODFIM_CLI_TEST_MAIN=1", "PODFIM_CLI_TEST_HWM="+hwm)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	line, err := os.ReadFile(hwm)
	f := strings.Fields(string(line)) // "VmHWM:", "12345", "kB"
	if err != nil || len(f) != 3 || f[2] != "kB" {
		t.Fatalf("no VmHWM from the child: %q %v", line, err)
	}
	kb, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String(), kb << 10
}

// maxPeak is the memory a check of a small tree may peak at whatever the
// baseline holds: the 256 MiB of issue 11 item 4's cgroup limit. Measured
// (go test -v -run TestHostileBaselineBounds): 17-23 MiB each.
const maxPeak = 256 << 20

// TestHostileBaselineBounds is issue 11 item 4 for the CLI, with the
// issue's inputs: a 1.1 MB unsigned baseline of 15 entries with 1,024
// extended attributes of 64 KiB made check use 1.14 GB (an OOM kill under
// 256 MiB instead of exit 20); a 150 KB baseline of 3M entries must be
// refused or bounded. Each check runs as its own process, so that its
// peak RSS is measured.
func TestHostileBaselineBounds(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	write := func(name string, f func(*os.File) error) string {
		path := filepath.Join(work, name)
		fh, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f(fh); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path)
		t.Logf("%s: %d bytes", name, st.Size())
		return path
	}
	xattrs, err := baselinetest.XattrBomb(15, 1024, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	bomb := write("xattrs.pfb", func(f *os.File) error { return xattrs.Write(f, policy.Default().Digest()) })
	code, out, e, peak := runChild(t, "check", "--root", dir, "--baseline", bomb)
	t.Logf("xattr bomb: exit %d, peak RSS %d MiB", code, peak>>20)
	if code != ExitCorrupt || out != "" || !strings.Contains(e, "extended attributes take more than 262144 bytes") {
		t.Errorf("check of the xattr bomb = %d\nstdout %q\nstderr %q\nwant %d", code, out, e, ExitCorrupt)
	}
	if peak > maxPeak {
		t.Errorf("check of the xattr bomb peaked at %d MiB, more than %d", peak>>20, maxPeak>>20)
	}

	// 3M entries: more than a policy's maxFiles is refused before any
	// entry is decoded; under it, the report is bounded by maxFindings.
	policies := map[string]string{
		"small.yaml": "version: 1\nrules:\n  - path: /\n    preset: ReadOnly\nlimits:\n  maxFiles: 1000000\n",
		"large.yaml": "version: 1\nrules:\n  - path: /\n    preset: ReadOnly\nlimits:\n  maxFindings: 1000\n",
	}
	entries, err := baselinetest.ManyEntries(3_000_000)
	if err != nil {
		t.Fatal(err)
	}
	for name, yaml := range policies {
		path := filepath.Join(work, name)
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := policy.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		many := write("many-"+name+".pfb", func(f *os.File) error { return entries.Write(f, p.Digest()) })
		code, out, e, peak := runChild(t, "check", "--root", dir, "--baseline", many, "--policy", path)
		t.Logf("3M entries, %s: exit %d, peak RSS %d MiB, %d bytes of report", name, code, peak>>20, len(out))
		switch name {
		case "small.yaml":
			if code != ExitCorrupt || out != "" || !strings.Contains(e, "holds 3000000 entries, more than the policy's limits.maxFiles (1000000)") {
				t.Errorf("check of 3M entries under maxFiles 1M = %d\nstdout %q\nstderr %q", code, out, e)
			}
		case "large.yaml":
			// Every entry is removed; 1,000 are listed, the rest counted.
			if code != ExitRemoved|ExitAdded {
				t.Errorf("check of 3M entries = %d %q", code, e)
			}
			if !strings.Contains(out, "more findings not listed") {
				t.Errorf("the report does not say how many findings it left out:\n%.2000s", out)
			}
			if len(out) > 1<<20 {
				t.Errorf("report of %d bytes for 1,000 listed findings", len(out))
			}
		}
		if peak > maxPeak {
			t.Errorf("check of 3M entries (%s) peaked at %d MiB, more than %d", name, peak>>20, maxPeak>>20)
		}
	}
}

// TestScanXattrLimits: a file with more extended attributes than an entry
// holds (tmpfs, like XFS, takes 1,100 names or several 64 KiB values) is
// recorded with those that fit, in name order, and a warning; the rest of
// the tree is baselined, and a check of the unchanged tree finds no
// difference but exits ExitIncomplete: the attributes past the bound were
// not compared, and a check never exits 0 unless it compared everything. Before, the Writer refused the
// entry and with it the whole baseline. It mounts a tmpfs, so it needs
// root, as make test.
func TestScanXattrLimits(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatalf("this test needs root to mount a tmpfs (make test runs as root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	writeFiles(t, dir, map[string]string{"many": "m", "big": "b", "plain": "p"})
	for i := range 1100 {
		if err := unix.Setxattr(filepath.Join(dir, "many"), fmt.Sprintf("user.%04d", i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	// trusted.* sorts before user.*: it is kept, whatever user.* holds.
	if err := unix.Setxattr(filepath.Join(dir, "big"), "trusted.label", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := unix.Setxattr(filepath.Join(dir, "big"), fmt.Sprintf("user.big%d", i), make([]byte, 64<<10), 0); err != nil {
			t.Fatal(err)
		}
	}
	base := filepath.Join(t.TempDir(), "b.pfb")
	code, _, e := run(t, "baseline", "--root", dir, "--out", base)
	if code != 0 || strings.Count(e, "more than 1024 extended attributes or 262144 bytes") != 2 {
		t.Fatalf("baseline = %d, want 0 with a warning for /many and /big:\n%s", code, e)
	}
	if code, out, e := run(t, "check", "--root", dir, "--baseline", base); code != ExitIncomplete || !strings.Contains(out, "INCOMPLETE") {
		t.Fatalf("check = %d, want %d (no difference, xattrs left uncompared)\n%s%s", code, ExitIncomplete, out, e)
	}
	code, out, e := run(t, "baseline", "show", "--entries", "--format", "json", base)
	var doc struct {
		Entries []struct {
			Path   string            `json:"path"`
			Xattrs map[string]string `json:"xattrs"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil {
		t.Fatalf("show = %d %v %s", code, err, e)
	}
	for _, en := range doc.Entries {
		switch en.Path {
		case "/many":
			if _, last := en.Xattrs["user.1023"]; len(en.Xattrs) != 1024 || !last {
				t.Errorf("/many records %d xattrs (user.1023: %v), want the first 1024", len(en.Xattrs), last)
			}
		case "/big":
			if _, ok := en.Xattrs["trusted.label"]; len(en.Xattrs) != 4 || !ok {
				t.Errorf("/big records %v, want trusted.label and three 64 KiB values", slices.Collect(maps.Keys(en.Xattrs)))
			}
		}
	}
}
