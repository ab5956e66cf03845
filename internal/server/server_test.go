package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podfim/podfim/internal/testwait"
)

// start runs a server on a free loopback port and returns its base URL.
// The server is shut down when the test ends.
func start(t *testing.T, reg *prometheus.Registry, ready Readiness, health func() error) string {
	t.Helper()
	s := New("127.0.0.1:0", reg, ready, health)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(2 * ShutdownTimeout):
			t.Error("Run did not return after the context ended")
		}
	})
	select {
	case <-s.Listening():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start listening")
	}
	return "http://" + s.Addr()
}

// client talks to the loopback server directly, never through a proxy.
var client = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}

func do(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestEndpoints(t *testing.T) {
	// What is registered is package metrics' business (tested there): here,
	// that the handler serves the registry it was given.
	reg := prometheus.NewRegistry()
	served := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podfim_test_total", Help: "A test counter."}, []string{"result"})
	reg.MustRegister(served)
	served.WithLabelValues("ok").Add(3)
	ready := &fakeReadiness{}
	var healthErr error
	base := start(t, reg, ready, func() error { return healthErr })

	for _, tc := range []struct {
		method, path string
		code         int
		body         string // a prefix of the body when not empty
	}{
		{"GET", "/healthz", 200, "ok\n"},
		{"HEAD", "/healthz", 200, ""},
		{"GET", "/readyz", 503, "not started: the first full verification of the target has not completed\n"},
		{"GET", "/", 404, "not found\n"},
		{"GET", "/metrics/", 404, ""},
		{"GET", "/healthz/", 404, ""},
		{"GET", "/debug/pprof/", 404, ""},
		{"POST", "/metrics", 405, "method not allowed"},
		{"POST", "/readyz", 405, ""},
		{"PUT", "/healthz", 405, ""},
		{"DELETE", "/nope", 405, ""},
		{"OPTIONS", "/metrics", 405, ""},
		{"PATCH", "/readyz", 405, ""},
	} {
		code, h, body := do(t, tc.method, base+tc.path)
		if code != tc.code {
			t.Errorf("%s %s: status %d, want %d (body %q)", tc.method, tc.path, code, tc.code, body)
		}
		if !strings.HasPrefix(body, tc.body) {
			t.Errorf("%s %s: body %q, want prefix %q", tc.method, tc.path, body, tc.body)
		}
		if code == 405 && h.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, h.Get("Allow"))
		}
	}

	healthErr = errors.New("target lost: no process of the app container")
	if code, _, body := do(t, "GET", base+"/healthz"); code != 500 || body != "target lost: no process of the app container\n" {
		t.Errorf("unhealthy /healthz: %d %q", code, body)
	}
	healthErr = nil

	ready.SetStarted(true)
	if code, _, body := do(t, "GET", base+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("ready /readyz: %d %q", code, body)
	}
	ready.SetViolation("/srv/www/index.html", true)
	ready.SetViolation("/etc/passwd", true)
	code, _, body := do(t, "GET", base+"/readyz")
	want := "integrity violation: /etc/passwd\nintegrity violation: /srv/www/index.html\n"
	if code != 503 || body != want {
		t.Errorf("/readyz with violations: %d %q, want 503 %q", code, body, want)
	}
	ready.SetViolation("/etc/passwd", false)
	ready.SetViolation("/srv/www/index.html", false)
	if code, _, _ := do(t, "GET", base+"/readyz"); code != 200 {
		t.Errorf("/readyz after the violations closed: %d", code)
	}

	code, h, body := do(t, "GET", base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics content type %q", h.Get("Content-Type"))
	}
	if !strings.Contains(body, "\npodfim_test_total{result=\"ok\"} 3\n") {
		t.Errorf("/metrics does not serve the registry's counter:\n%s", body)
	}
}

func TestNilReadinessAndHealth(t *testing.T) {
	base := start(t, nil, nil, nil)
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, body := do(t, "GET", base+p); code != 200 {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
}

func TestRunPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := New(ln.Addr().String(), nil, nil, nil)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("Run on a taken port: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run on a taken port did not return")
	}
	if s.Addr() != ln.Addr().String() {
		t.Errorf("Addr after a failed listen: %q", s.Addr())
	}
}

func TestRunTwice(t *testing.T) {
	s := New("127.0.0.1:0", nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	<-s.Listening()
	if err := s.Run(ctx); err == nil {
		t.Error("second Run: no error")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestShutdownWaitsForRequests checks that a request in flight when the
// context ends is completed, not cut off.
func TestShutdownWaitsForRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	var handled atomic.Bool
	s := New("127.0.0.1:0", nil, nil, func() error {
		close(entered)
		<-release
		handled.Store(true)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var handledFirst bool // the request was handled when Run returned
	go func() {
		err := s.Run(ctx)
		handledFirst = handled.Load()
		errc <- err
	}()
	<-s.Listening()
	got := make(chan int, 1)
	go func() {
		resp, err := client.Get("http://" + s.Addr() + "/healthz")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-entered
	cancel()
	// The listener closes when the shutdown starts: Run is then waiting
	// for the request, not done.
	testwait.Eventually(t, 5*time.Second, time.Millisecond, "the listener to close", testwait.True(func() bool {
		c, err := net.Dial("tcp", s.Addr())
		if err == nil {
			c.Close()
		}
		return err != nil
	}))
	select {
	case err := <-errc:
		t.Fatalf("Run returned with a request in flight: %v", err)
	default:
	}
	close(release)
	if code := <-got; code != 200 {
		t.Errorf("request in flight at shutdown: %d", code)
	}
	if err := <-errc; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !handledFirst {
		t.Error("Run returned before the request in flight was handled")
	}
}
