package sidecar_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/testwait"
)

// echoInto does what `echo TEXT > path` in the app container does: open
// with O_TRUNC, one write. Through /proc/PID/root, as kubectl exec's
// shell would reach the same inode.
func echoInto(t *testing.T, a *app, path, text string) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/root%s", a.pid, path), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// evidenceObject reads a kept object of the sidecar's state directory.
func evidenceObject(t *testing.T, state, name string) string {
	t.Helper()
	if !strings.HasPrefix(name, "sha256-") {
		name = "sha256-" + name
	}
	b, err := os.ReadFile(filepath.Join(state, "evidence", "objects", name))
	if err != nil {
		t.Fatalf("evidence object: %v", err)
	}
	return string(b)
}

// Issue 12, evidence before repair: the evidence of `echo Hacked >
// /www/index.html` holds "Hacked" and a diff against the page, after
// restore has rewritten the file; the finding's log line names it.
func TestEvidenceBeforeRestore(t *testing.T) {
	a := startApp(t, makeImage(t, page))
	state := filepath.Join(t.TempDir(), "state")
	s := startSidecar(t, sidecarOpts{state: state, respond: "log,metric,restore"})
	waitStarted(t, s, a)
	s.waitLog(t, waitTimeout, "kept original content for restore", func(l logLine) bool { return l.num("entries") >= 1 })

	echoInto(t, a, pagePath, "Hacked\n")
	l := s.waitLog(t, waitTimeout, "integrity violation", func(l logLine) bool {
		return l.str("path") == pagePath && strings.Contains(l.str("diff_excerpt"), "+Hacked")
	})
	if want := `-Hello, world!\n+Hacked`; l.str("diff_excerpt") != want || l.str("evidence_result") != "kept" || l.str("evidence_type") != "text" {
		t.Errorf("violation line: excerpt %q, result %q, type %q; want %q, kept, text", l.str("diff_excerpt"), l.str("evidence_result"), l.str("evidence_type"), want)
	}
	s.waitLog(t, waitTimeout, "file restored", func(l logLine) bool { return l.str("path") == pagePath })
	testwait.Eventually(t, waitTimeout, poll, "the page restored", func() (bool, string) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", a.pid, pagePath))
		return err == nil && string(b) == page, fmt.Sprintf("%q %v", b, err)
	})
	// The page is the original again; the evidence still holds what the
	// attacker wrote, and the diff.
	if got := evidenceObject(t, state, l.str("evidence_sha256")); got != "Hacked\n" {
		t.Errorf("kept bytes %q, want %q", got, "Hacked\n")
	}
	rec := readRecord(t, state, l.str("evidence_id"))
	diff := evidenceObject(t, state, rec.Diff)
	for _, want := range []string{"--- /www/index.html (baseline)", "-Hello, world!\n", "+Hacked\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	if v, _ := s.metric(t, "podfim_evidence_total", "result=kept"); v < 1 {
		t.Errorf("podfim_evidence_total{result=kept} = %v", v)
	}
}

type record struct {
	Diff    string `json:"diff"`
	Object  string `json:"object"`
	Excerpt string `json:"excerpt"`
}

func readRecord(t *testing.T, state, id string) record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "evidence", "records", id+".json"))
	if err != nil {
		t.Fatalf("evidence record: %v", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// File content is hostile: what the excerpt shows of it in the log line
// (decoded from JSON, as a log viewer shows it) has no newline, no
// terminal escape and no bidirectional override.
func TestEvidenceExcerptHostile(t *testing.T) {
	a := startApp(t, makeImage(t, page))
	state := filepath.Join(t.TempDir(), "state")
	s := startSidecar(t, sidecarOpts{state: state, respond: "log,restore"})
	waitStarted(t, s, a)
	s.waitLog(t, waitTimeout, "kept original content for restore", func(l logLine) bool { return l.num("entries") >= 1 })

	echoInto(t, a, pagePath, "\x1b]0;pwned\x07\x1b[2J\n{\"level\":\"INFO\",\"msg\":\"all good\"}\u202e\n")
	l := s.waitLog(t, waitTimeout, "integrity violation", func(l logLine) bool {
		return l.str("path") == pagePath && strings.Contains(l.str("diff_excerpt"), "pwned")
	})
	ex := l.str("diff_excerpt")
	if strings.ContainsAny(ex, "\x1b\x07\n\r\u202e") {
		t.Errorf("excerpt holds raw control characters: %q", ex)
	}
	if !strings.Contains(ex, `\x1b]0;pwned\a\x1b[2J`) || !strings.Contains(ex, `\u202e`) {
		t.Errorf("excerpt does not show the escapes: %q", ex)
	}
	if n := len(s.logs("all good", nil)); n != 0 {
		t.Errorf("file content forged %d log lines", n)
	}
}

// A full state volume loses the evidence, says so (log, metric) and the
// response still runs: the page is restored.
func TestEvidenceFullDisk(t *testing.T) {
	state := t.TempDir()
	if err := unix.Mount("tmpfs", state, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs for the state directory: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(state, unix.MNT_DETACH) })
	a := startApp(t, makeImage(t, page))
	s := startSidecar(t, sidecarOpts{state: state, respond: "log,metric,restore"})
	waitStarted(t, s, a)
	s.waitLog(t, waitTimeout, "kept original content for restore", func(l logLine) bool { return l.num("entries") >= 1 })
	// Fill the volume.
	f, err := os.Create(filepath.Join(state, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()

	echoInto(t, a, pagePath, "Hacked\n")
	s.waitLog(t, waitTimeout, "evidence lost", func(l logLine) bool {
		return l.str("path") == pagePath && strings.Contains(l.str("error"), "no space")
	})
	s.waitLog(t, waitTimeout, "file restored", func(l logLine) bool { return l.str("path") == pagePath })
	if v, _ := s.metric(t, "podfim_evidence_total", "result=error"); v < 1 {
		t.Errorf("podfim_evidence_total{result=error} = %v", v)
	}
	l := s.logs("integrity violation", func(l logLine) bool { return l.str("path") == pagePath })
	if len(l) == 0 || l[0].str("evidence_result") != "error" || l[0].str("evidence_sha256") == "" {
		t.Errorf("the violation line does not say the evidence was lost: %v", l)
	}
}
