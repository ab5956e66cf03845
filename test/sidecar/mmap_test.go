package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/testwait"
)

// mmapWriter is a process of the app container (entered with nsenter, as
// `kubectl exec` would start one) that maps the page shared and writable.
type mmapWriter struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

func startMmapWriter(t *testing.T, a *app) *mmapWriter {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(a.pid), "-m", "-r", "-w", "--", "/app", "mmap", pagePath, strconv.Itoa(len(page)))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("nsenter: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	w := &mmapWriter{cmd: cmd, in: in, lines: bufio.NewScanner(out)}
	w.expect(t, "mapped")
	return w
}

// write copies line (a page without its newline) into the mapping.
func (w *mmapWriter) write(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(w.in, line); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "written")
}

func (w *mmapWriter) expect(t *testing.T, line string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		w.lines.Scan()
		got <- w.lines.Text()
	}()
	select {
	case l := <-got:
		if l != line {
			t.Fatalf("the mmap writer said %q, want %q", l, line)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the mmap writer did not say %q", line)
	}
}

// readOnlyPolicy records every attribute, mtime and ctime included, as the
// built-in policy does: quick checks then reuse the hash of a file whose
// size, mtime, ctime and inode are as recorded. (The tests' policy records
// no times, so its quick checks hash everything.)
const readOnlyPolicy = `version: 1
rules:
  - path: /
    preset: ReadOnly
`

// Issue 11 item 6. A process of the app holds the page mapped shared and
// writable, and has written it through the mapping before the sidecar
// started (the same bytes: the page is dirty, its mtime moved once). It
// writes through the mapping again: a write to a dirty page takes no fault,
// so neither mtime nor ctime moves (on tmpfs, the app's root here, never:
// there is no writeback), and there is no write(2), so no inotify event
// until the mapping goes; a quick check reuses the page's old hash. With
// full checks an hour apart, the sidecar reports the page (attribute mmap)
// and its holder (pid, executable) while the mapping is held. Before the
// fix nothing was reported until the writer exited (its munmap is the
// first inotify event).
func TestMmapWriter(t *testing.T) {
	a := startApp(t, makeImage(t, page))
	w := startMmapWriter(t, a)
	w.write(t, page)
	// Older than the racy window when the baseline is taken: a quick check
	// re-hashes files changed within 1 s of it (design.md, "racy files").
	time.Sleep(2100 * time.Millisecond)
	s := startSidecar(t, sidecarOpts{state: filepath.Join(t.TempDir(), "state"), respond: "log,metric,unready",
		policy: readOnlyPolicy, extra: []string{"--full-interval", "1h"}})
	s.waitLog(t, startTimeout, "target found", func(l logLine) bool { return l.num("pid") == a.pid })
	testwait.Eventually(t, startTimeout, poll, "the first full check", func() (bool, string) {
		v, _ := s.metric(t, "podfim_last_full_check_timestamp_seconds")
		return v > 0, fmt.Sprint(v)
	})
	w.write(t, tampered)

	v := s.waitLog(t, waitTimeout, "integrity violation", func(l logLine) bool { return l.str("path") == pagePath })
	if v.str("kind") != "changed" || !slices.Contains(v.list("attributes"), "mmap") {
		t.Errorf("violation %v, want kind changed, attribute mmap", v)
	}
	holder := s.waitLog(t, waitTimeout, "a process of the app maps a protected file shared and writable", nil)
	if holder.str("path") != pagePath || holder.num("pid") != w.cmd.Process.Pid || holder.str("exe") != "/app" {
		t.Errorf("holder line %v, want path %s, pid %d, exe /app", holder, pagePath, w.cmd.Process.Pid)
	}
	s.waitReadyz(t, waitTimeout, http.StatusServiceUnavailable, "integrity violation: "+pagePath)

	// The writer goes: the page is hashed and its new content reported,
	// not resolved.
	w.cmd.Process.Kill()
	w.cmd.Wait()
	changed := s.waitLog(t, waitTimeout, "integrity violation", func(l logLine) bool {
		return l.str("path") == pagePath && slices.Contains(l.list("attributes"), "sha256")
	})
	if slices.Contains(changed.list("attributes"), "mmap") || changed.str("new_sha256") == changed.str("old_sha256") {
		t.Errorf("after the writer: %v, want the new content, no mapping", changed)
	}
	if v, _ := s.metric(t, "podfim_violations_open"); v != 1 {
		t.Errorf("podfim_violations_open = %v, want 1", v)
	}
}
