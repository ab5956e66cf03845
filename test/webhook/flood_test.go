// Package webhook_test floods the real `podfim webhook` binary, run in a
// cgroup v1 memory cgroup with the chart's 128 MiB limit, over loopback:
// concurrent AdmissionReviews of the largest size the API server sends and
// thousands of half-open TLS connections (issue 11, item 2). It asserts
// that the webhook lives through it (the kernel counted no OOM kill),
// answers a valid review afterwards, and reports the cgroup's peak memory
// (the figure docs/webhook.md justifies the chart's limit with).
//
// It needs root and the cgroup v1 memory controller at
// /sys/fs/cgroup/memory; without them it fails, it never skips.
package webhook_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/podfim/podfim/internal/webhook/certs"
)

// The flood. Every loop is bounded and ends by itself.
const (
	memoryLimit   = 128 << 20 // the chart's webhook.resources.limits.memory
	reviewClients = 32        // concurrent clients sending large reviews (the report: 16 OOM-killed it)
	reviewRounds  = 6         // reviews each client sends
	reviewBytes   = 3 << 20   // the API server's largest object
	halfOpen      = 8000      // TLS connections that send a ClientHello's first bytes and stall
	cgroupRoot    = "/sys/fs/cgroup/memory"
)

func TestFloodUnderMemoryLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the flood test needs root: it makes a memory cgroup and runs the webhook in it")
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, "memory.limit_in_bytes")); err != nil {
		t.Fatalf("the flood test needs the cgroup v1 memory controller at %s: %v", cgroupRoot, err)
	}
	dir := t.TempDir()
	bin := buildPodfim(t, dir)
	pool, certFile, keyFile := writeCert(t, dir)
	cg := newCgroup(t, memoryLimit)

	addr := freeAddr(t)
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg,
		bin, "webhook", "--listen="+addr, "--cert-file="+certFile, "--key-file="+keyFile,
		"--sidecar-image=localhost/podfim:dev", "--log-level=error")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the webhook has exited, with its status in
	// waitErr.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := "https://" + addr
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitHealthy(t, client, base, exited, func() string { return fmt.Sprintf("%v\n%s", waitErr, stderr.String()) })

	start := time.Now()
	var wg sync.WaitGroup
	stall := halfOpenFlood(t, &wg, addr)
	codes := reviewFlood(&wg, pool, base)
	wg.Wait()
	t.Logf("flood done in %s: %d half-open connections held; large reviews answered %s",
		time.Since(start).Round(time.Millisecond), stall.Load(), codes)
	select {
	case <-exited:
		t.Fatalf("the webhook exited during the flood (OOM kills: %d): %v\n%s", oomKills(t, cg), waitErr, stderr.String())
	default:
	}

	// A valid review is answered once the flood is over (the API server
	// retries within its timeout; here: until a deadline).
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := validReview(client, base)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no valid answer after the flood: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := oomKills(t, cg); n != 0 {
		t.Errorf("the kernel counted %d OOM kills in the webhook's cgroup", n)
	}
	peak := readInt(t, filepath.Join(cg, "memory.max_usage_in_bytes"))
	t.Logf("peak memory of the webhook's cgroup: %.1f MiB of %d MiB (memory.max_usage_in_bytes; memory.failcnt %d)",
		float64(peak)/(1<<20), memoryLimit>>20, readInt(t, filepath.Join(cg, "memory.failcnt")))
	if m := codes.get(http.StatusOK); m == 0 {
		t.Errorf("no large review was answered during the flood: %s", codes)
	}
}

// buildPodfim builds the real binary, without the race detector (whose
// shadow memory would be counted against the limit).
func buildPodfim(t *testing.T, dir string) string {
	t.Helper()
	// go test puts the go command that runs it first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "podfim")
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", out, "github.com/podfim/podfim/cmd/podfim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func writeCert(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	b, err := certs.NewBundle(time.Now(), certs.Names{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := errors.Join(os.WriteFile(certFile, b.Cert, 0o600), os.WriteFile(keyFile, b.Key, 0o600)); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACert)
	return pool, certFile, keyFile
}

// newCgroup makes a child memory cgroup with limit and removes it at the
// end (after the webhook has exited).
func newCgroup(t *testing.T, limit int64) string {
	t.Helper()
	cg := filepath.Join(cgroupRoot, fmt.Sprintf("podfim-webhook-flood-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The cgroup is removable once its last process has exited.
		deadline := time.Now().Add(10 * time.Second)
		for os.Remove(cg) != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := os.WriteFile(filepath.Join(cg, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without swap accounting the limit is on RAM only; where it exists,
	// the same limit on RAM+swap keeps the webhook from swapping instead.
	if f := filepath.Join(cg, "memory.memsw.limit_in_bytes"); fileExists(f) {
		if err := os.WriteFile(f, []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cg
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHealthy(t *testing.T, c *http.Client, base string, exited <-chan struct{}, why func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("the webhook exited: %s", why())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook is not healthy after 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// halfOpenFlood opens halfOpen TCP connections, each sending the header of
// a 16 KiB TLS record and nothing more (what makes a TLS server grow its
// input buffer), holds them for a while and closes them. It returns the
// count of connections that got through the kernel's queue.
func halfOpenFlood(t *testing.T, wg *sync.WaitGroup, addr string) *atomic.Int64 {
	t.Helper()
	var held atomic.Int64
	const workers = 256
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conns []net.Conn
			for i := w; i < halfOpen; i += workers {
				c, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
				if err != nil {
					continue // the accept queue is full: the kernel drops the SYN
				}
				// A handshake record header announcing 16 KiB.
				_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x40, 0x00})
				conns = append(conns, c)
				held.Add(1)
			}
			time.Sleep(3 * time.Second) // hold them while the reviews arrive
			for _, c := range conns {
				c.Close()
			}
		}()
	}
	return &held
}

// codeCount counts HTTP status codes (0: a transport error).
type codeCount struct {
	mu sync.Mutex
	n  map[int]int
}

func (c *codeCount) add(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[code]++
}

func (c *codeCount) get(code int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[code]
}

func (c *codeCount) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for code, n := range c.n {
		parts = append(parts, fmt.Sprintf("%d: %d", code, n))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// reviewFlood sends reviewRounds reviews of reviewBytes from each of
// reviewClients clients at once.
func reviewFlood(wg *sync.WaitGroup, pool *x509.CertPool, base string) *codeCount {
	codes := &codeCount{n: map[int]int{}}
	body := largeReview()
	for range reviewClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			defer c.CloseIdleConnections()
			for range reviewRounds {
				resp, err := c.Post(base+"/mutate", "application/json", bytes.NewReader(body))
				if err != nil {
					codes.add(0)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes.add(resp.StatusCode)
			}
		}()
	}
	return codes
}

// largeReview is the review of a pod creation of reviewBytes: 1,500
// annotations of 2 KiB (a map to decode, not one string).
func largeReview() []byte {
	ann := map[string]string{}
	v := strings.Repeat("a", 2048)
	for i := range reviewBytes / 2048 {
		ann[fmt.Sprintf("example.com/a%d", i)] = v
	}
	pod := map[string]any{"metadata": map[string]any{"name": "big", "annotations": ann},
		"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "x"}}}}
	return review(pod)
}

func review(pod any) []byte {
	raw, err := json.Marshal(pod)
	if err != nil {
		panic(err)
	}
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}),
			Operation: admissionv1.Create, Namespace: "shop"},
	}
	r.Request.Object.Raw = raw
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

// validReview posts a small pod and checks that it is injected.
func validReview(c *http.Client, base string) error {
	body := review(map[string]any{"metadata": map[string]any{"name": "hello"},
		"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "hello"}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/mutate", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if out.Response == nil || !out.Response.Allowed || !bytes.Contains(out.Response.Patch, []byte(`"name":"podfim"`)) {
		return fmt.Errorf("status %d: not injected: %+v", resp.StatusCode, out.Response)
	}
	return nil
}

// oomKills is the oom_kill count of the cgroup's memory.oom_control.
func oomKills(t *testing.T, cg string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(cg, "memory.oom_control"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no oom_kill in memory.oom_control:\n%s", data)
	return 0
}

func readInt(t *testing.T, p string) int64 {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
