package drift

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
)

// TestOutsidePolicy: a baseline whose policy covers only /www says nothing
// of the app's own /hello, so a process running it is not "added" (a
// policy of part of the image made every process of the app drift, and
// the kill response killed the app in a loop). A file the policy covers
// and the baseline lacks is still added; memory-backed code needs no
// baseline and is still reported.
func TestOutsidePolicy(t *testing.T) {
	const appNS = 4026532001
	id := strings.Repeat("ab", 32)
	proc := fakeProc{t: t, dir: t.TempDir()}
	rootDir := t.TempDir()
	for _, f := range []string{"hello", "www/evil"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(rootDir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootDir, f), []byte(f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, err := scan.OpenRoot(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	main := proc.add(10, 0, 1000, appNS, "/hello", id, "--dir=/www")
	sink := &sink{ch: make(chan Finding, 16)}
	c := New(Config{
		Finder:    &target.Finder{Proc: proc.dir, Self: -1, Infra: -1},
		Container: &target.Container{PID: 10, MountNS: appNS, Exe: "/hello", ContainerID: id, Processes: []target.Process{main}},
		Root:      root,
		Baseline:  &fakeBase{dirs: []string{"/www", "/hello"}}, // neither holds an entry
		Covers:    func(p string) bool { return under(p, "/www") },
	}, sink)
	poll := func() map[string]Reason {
		t.Helper()
		if err := c.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := map[string]Reason{}
		for {
			select {
			case f := <-sink.ch:
				got[f.Path] = f.Reason
			default:
				return got
			}
		}
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("the app's /hello, outside the policy's /www: findings %v, want none", got)
	}
	proc.add(11, 10, 1001, appNS, "/www/evil", id)
	proc.add(12, 10, 1002, appNS, "/memfd:payload (deleted)", id)
	got := poll()
	if got["/www/evil"] != Added || got["/memfd:payload"] != Memory || len(got) != 2 {
		t.Errorf("findings %v, want /www/evil added and /memfd:payload memory only", got)
	}
}
