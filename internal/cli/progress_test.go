package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty returns the two ends of a new pseudo-terminal.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// runOnPty runs podfim with standard error on a terminal and the progress
// shown from the start; it returns the exit status, standard output and
// what the terminal received.
func runOnPty(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	master, slave := openPty(t)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(master) // EIO once the slave is closed and drained
		got <- b
	}()
	var out bytes.Buffer
	code := runStreams(context.Background(), args, &streams{out: &out, errOut: slave, progressAfter: 0})
	slave.Close()
	select {
	case b := <-got:
		return code, out.String(), string(b)
	case <-time.After(20 * time.Second):
		t.Fatal("the terminal's output never ended")
		return 0, "", ""
	}
}

func progressTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), bytes.Repeat([]byte{byte(i)}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestProgressOnTerminal: baseline, check and update show their progress
// on a terminal, clear it before anything else is written, and keep it
// out of standard output (one JSON document).
func TestProgressOnTerminal(t *testing.T) {
	dir := progressTree(t)
	base := filepath.Join(t.TempDir(), "b.pfb")
	for _, args := range [][]string{
		{"baseline", "--root", dir, "--out", base},
		{"check", "--root", dir, "--baseline", base, "--format", "json"},
		{"update", "--root", dir, "--baseline", base, "--format", "json"},
	} {
		code, out, term := runOnPty(t, args...)
		if code != 0 {
			t.Fatalf("%s = %d\n%s\n%q", args[0], code, out, term)
		}
		last := strings.LastIndex(term, " entries/s, ")
		if !strings.Contains(term, clearLine+"podfim: ") || last < 0 {
			t.Fatalf("%s: no progress on the terminal: %q", args[0], term)
		}
		if !strings.Contains(term[last:], clearLine) {
			t.Errorf("%s: the progress line is not cleared at the end: %q", args[0], term[last:])
		}
		if i := strings.Index(term, "wrote baseline"); i >= 0 && i < last {
			t.Errorf("%s: progress after other output: %q", args[0], term)
		}
		if strings.Contains(out, "entries/s") || strings.Contains(out, "\x1b") {
			t.Errorf("%s: progress on standard output: %q", args[0], out)
		}
		if args[0] != "baseline" && !json.Valid([]byte(out)) {
			t.Errorf("%s --format json: standard output is not one JSON document: %q", args[0], out)
		}
	}
}

// TestProgressNotOnFiles: standard error that is a file or a pipe never
// gets the progress, however long the scan runs.
func TestProgressNotOnFiles(t *testing.T) {
	dir := progressTree(t)
	base := filepath.Join(t.TempDir(), "b.pfb")
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, errOut := range []io.Writer{f, w, &bytes.Buffer{}} {
		var out bytes.Buffer
		if code := runStreams(context.Background(), []string{"baseline", "--root", dir, "--out", base}, &streams{out: &out, errOut: errOut, progressAfter: 0}); code != 0 {
			t.Fatalf("baseline = %d", code)
		}
	}
	w.Close()
	piped, _ := io.ReadAll(r)
	written, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"file": written, "pipe": piped} {
		if bytes.Contains(b, []byte("entries/s")) || bytes.Contains(b, []byte("\x1b")) {
			t.Errorf("progress written to a %s: %q", name, b)
		}
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(150000, 3<<30, 2500*time.Millisecond)
	want := "podfim: 150000 entries, 3.0 GiB hashed, 60000 entries/s, 1.2 GiB/s, 2.5s"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
	if got := progressLine(0, 0, 0); got != "podfim: 0 entries, 0 B hashed, 0 entries/s, 0 B/s, 0s" {
		t.Errorf("progressLine at start = %q", got)
	}
}
