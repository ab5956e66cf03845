package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func newServer(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	srv := httptest.NewServer(handler(root))
	t.Cleanup(srv.Close)
	return srv
}

func TestInitPageWritesHelloWith0600(t *testing.T) {
	dir := t.TempDir()
	created, err := initPage(dir)
	if err != nil || !created {
		t.Fatalf("initPage = %v, %v; want true, nil", created, err)
	}
	p := filepath.Join(dir, "index.html")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != Page || Page != "Hello, world!\n" {
		t.Fatalf("page = %q", b)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
		t.Fatalf("mode = %v, want -rw-------", fi.Mode())
	}
}

func TestInitPageKeepsAnExistingPage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "index.html")
	if err := os.WriteFile(p, []byte("Hacked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	created, err := initPage(dir)
	if err != nil || created {
		t.Fatalf("initPage = %v, %v; want false, nil", created, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "Hacked\n" {
		t.Fatalf("an existing page was rewritten: %q", b)
	}
}

func TestInitPageDoesNotFollowASymlink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "victim")
	if err := os.Symlink(target, filepath.Join(dir, "index.html")); err != nil {
		t.Fatal(err)
	}
	if _, err := initPage(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("initPage wrote through a symlink: %v", err)
	}
}

func TestServesThePage(t *testing.T) {
	dir := t.TempDir()
	if _, err := initPage(dir); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, dir)
	for _, path := range []string{"/", "/index.html"} {
		code, body := get(t, srv.URL+path)
		if code != http.StatusOK || body != "Hello, world!\n" {
			t.Errorf("GET %s = %d %q", path, code, body)
		}
	}
	code, _ := get(t, srv.URL+"/missing")
	if code != http.StatusNotFound {
		t.Errorf("GET /missing = %d, want 404", code)
	}
}

func TestServesWhatIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	if _, err := initPage(dir); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("Hacked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, srv.URL+"/"); body != "Hacked\n" {
		t.Fatalf("GET / = %q; want what is on disk now", body)
	}
}

func TestSymlinkOutOfTheDirectoryIsNotServed(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "leak")); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, dir)
	code, body := get(t, srv.URL+"/leak")
	if code == http.StatusOK || strings.Contains(body, "secret") {
		t.Fatalf("GET /leak = %d %q; a symlink escaped the directory", code, body)
	}
}

func TestHealthz(t *testing.T) {
	srv := newServer(t, t.TempDir())
	code, body := get(t, srv.URL+"/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Fatalf("GET /healthz = %d %q", code, body)
	}
}

func TestRefusesRoot(t *testing.T) {
	var stderr bytes.Buffer
	dir := t.TempDir()
	code := run(context.Background(), []string{"--dir", dir, "--addr", "127.0.0.1:0"}, &stderr, 0, nil)
	if code != exitError {
		t.Fatalf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(stderr.String(), "refusing to run as root") {
		t.Fatalf("stderr = %q", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "index.html")); !os.IsNotExist(err) {
		t.Fatalf("wrote the page before refusing: %v", err)
	}
}

// runServer runs hello with args as euid and returns its address, a cancel
// func (SIGTERM) and the channel of its exit status.
func runServer(t *testing.T, euid int, args ...string) (string, context.CancelFunc, <-chan int, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, args, &stderr, euid, ready) }()
	select {
	case addr := <-ready:
		return addr, cancel, done, &stderr
	case code := <-done:
		cancel()
		t.Fatalf("hello exited with %d: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("hello did not start")
	}
	return "", nil, nil, nil
}

func TestRunAllowRootServesAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	addr, cancel, done, _ := runServer(t, 0, "--dir", dir, "--addr", "127.0.0.1:0", "--allow-root")
	if _, body := get(t, "http://"+addr+"/"); body != Page {
		t.Fatalf("GET / = %q", body)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d after shutdown, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
}

func TestRunAsNonRoot(t *testing.T) {
	dir := t.TempDir()
	addr, cancel, done, stderr := runServer(t, 65532, "--dir", dir, "--addr", "127.0.0.1:0")
	defer func() { cancel(); <-done }()
	if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz = %d %q", code, body)
	}
	if !strings.Contains(stderr.String(), `"msg":"wrote the page"`) {
		t.Errorf("no log line for the page written: %s", stderr.String())
	}
}

func TestNoInitPage(t *testing.T) {
	dir := t.TempDir()
	addr, cancel, done, _ := runServer(t, 1000, "--dir", dir, "--addr", "127.0.0.1:0", "--init-page=false")
	defer func() { cancel(); <-done }()
	if _, err := os.Stat(filepath.Join(dir, "index.html")); !os.IsNotExist(err) {
		t.Fatalf("--init-page=false wrote the page: %v", err)
	}
	if _, body := get(t, "http://"+addr+"/"); strings.Contains(body, "Hello") {
		t.Fatalf("GET / = %q without a page", body)
	}
}

func TestBadArguments(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"extra"}, &stderr, 1000, nil); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if code := run(context.Background(), []string{"--nope"}, &stderr, 1000, nil); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if code := run(context.Background(), []string{"--help"}, &stderr, 1000, nil); code != exitOK {
		t.Fatalf("--help: exit %d, want 0", code)
	}
}
