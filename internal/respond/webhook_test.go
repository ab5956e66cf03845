package respond

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/origin"
)

// receiver is a webhook receiver on 127.0.0.1 that answers with the codes
// of script in turn (200 once it runs out) and records every request.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	script  []int
	block   bool          // hold each request until release is closed or the client gives up
	entered chan struct{} // receives once per request, when block is set
	release chan struct{}
}

type recorded struct {
	at     time.Time
	method string
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, tls bool, script ...int) *receiver {
	t.Helper()
	rc := &receiver{script: script, entered: make(chan struct{}, 100), release: make(chan struct{})}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, recorded{time.Now(), r.Method, r.Header.Clone(), body})
		i := len(rc.reqs) - 1
		rc.mu.Unlock()
		if rc.block {
			rc.entered <- struct{}{}
			select {
			case <-rc.release:
			case <-r.Context().Done():
				return
			}
		}
		code := http.StatusOK
		if i < len(rc.script) {
			code = rc.script[i]
		}
		if code == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	})
	rc.srv = httptest.NewUnstartedServer(h)
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-CA test fails handshakes on purpose
	if tls {
		rc.srv.StartTLS()
	} else {
		rc.srv.Start()
	}
	if !strings.HasPrefix(rc.srv.URL, "http://127.0.0.1:") && !strings.HasPrefix(rc.srv.URL, "https://127.0.0.1:") {
		t.Fatalf("receiver not on 127.0.0.1: %s", rc.srv.URL)
	}
	t.Cleanup(rc.srv.Close)
	t.Cleanup(func() { rc.unblock() }) // runs first: lets held requests finish
	return rc
}

func (rc *receiver) unblock() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	select {
	case <-rc.release:
	default:
		close(rc.release)
	}
}

func (rc *receiver) requests() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

// closeWithin closes the responder, which waits for the queue to drain.
func closeWithin(t *testing.T, r *Responder, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return r.Close(ctx)
}

func TestWebhookSuccess(t *testing.T) {
	rc := newReceiver(t, false)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL + "/hook", TokenFile: tok}})
	f := changed("/srv/www/index.html", []byte("Hello, world!\n"), []byte("Hacked\n"))
	f.Origin = origin.Origin{Kind: origin.Image, Layer: 3, LayerDigest: "sha256:0c"}
	if err := e.r.Handle(t.Context(), f, nil); err != nil {
		t.Fatal(err)
	}
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.method != "POST" || r.header.Get("Content-Type") != "application/json" || r.header.Get("Authorization") != "Bearer s3cret" {
		t.Errorf("request %s %v", r.method, r.header)
	}
	var p struct {
		Time       time.Time      `json:"time"`
		Path       string         `json:"path"`
		Kind       string         `json:"kind"`
		Attributes []string       `json:"attributes"`
		Origin     string         `json:"origin"`
		Layer      int            `json:"layer"`
		LayerDig   string         `json:"layer_digest"`
		Old        map[string]any `json:"old"`
		New        map[string]any `json:"new"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("payload %s: %v", r.body, err)
	}
	if p.Origin != "image" || p.Layer != 3 || p.LayerDig != "sha256:0c" {
		t.Errorf("payload's origin: %s", r.body)
	}
	if p.Path != f.Path || p.Kind != "changed" || strings.Join(p.Attributes, ",") != "size,inode,mtime,ctime,sha256" ||
		!p.Time.Equal(e.clock.Now()) {
		t.Errorf("payload %s", r.body)
	}
	if p.Old["sha256"] != hexSHA256("Hello, world!\n") || p.New["sha256"] != hexSHA256("Hacked\n") || p.Old["mode"] != "0644" {
		t.Errorf("old/new not in the report's schema: %s", r.body)
	}
	if v := e.action(t, ActionWebhook, metrics.ResultOK); v != 1 {
		t.Errorf("webhook ok = %v", v)
	}
}

func TestWebhookRetries(t *testing.T) {
	rc := newReceiver(t, false, 500, 503)
	e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL, Backoff: 20 * time.Millisecond}})
	if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
		t.Fatal(err)
	}
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (500, 503, 200)", len(reqs))
	}
	// Exponential backoff: 20 ms, then 40 ms.
	if d := reqs[1].at.Sub(reqs[0].at); d < 20*time.Millisecond {
		t.Errorf("first retry after %s", d)
	}
	if d := reqs[2].at.Sub(reqs[1].at); d < 40*time.Millisecond {
		t.Errorf("second retry after %s", d)
	}
	if ok, bad := e.action(t, ActionWebhook, metrics.ResultOK), e.action(t, ActionWebhook, metrics.ResultError); ok != 1 || bad != 0 {
		t.Errorf("webhook ok = %v, error = %v", ok, bad)
	}
}

func TestWebhookTimeout(t *testing.T) {
	rc := newReceiver(t, false)
	rc.block = true
	e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{
		URL: rc.srv.URL + "/services/S3CRET", Timeout: 50 * time.Millisecond, Attempts: 2, Backoff: time.Millisecond}})
	if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
		t.Fatal(err)
	}
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.requests()); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	if ok, bad := e.action(t, ActionWebhook, metrics.ResultOK), e.action(t, ActionWebhook, metrics.ResultError); ok != 0 || bad != 1 {
		t.Errorf("webhook ok = %v, error = %v", ok, bad)
	}
	fails := withMsg(e.logs.lines(t), msgWebhookFailed)
	if len(fails) != 1 || fails[0][keyAttempts] != float64(2) || !strings.Contains(fails[0][keyError].(string), "deadline exceeded") {
		t.Fatalf("failure lines %v", fails)
	}
	if strings.Contains(fails[0][keyError].(string), "S3CRET") {
		t.Errorf("the URL, with its secret path, was logged: %v", fails[0])
	}
}

func TestWebhookQueueFull(t *testing.T) {
	rc := newReceiver(t, false)
	rc.block = true
	e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL, QueueSize: 1}})
	handle := func(p string) {
		if err := e.r.Handle(t.Context(), changed(p, []byte("a"), []byte("b")), nil); err != nil {
			t.Fatal(err)
		}
	}
	handle("/1")
	select {
	case <-rc.entered: // the sender is busy with /1
	case <-time.After(10 * time.Second):
		t.Fatal("first delivery never arrived")
	}
	handle("/2") // queued
	handle("/3") // dropped
	handle("/4") // dropped
	if v := e.action(t, ActionWebhook, metrics.ResultError); v != 2 {
		t.Errorf("webhook error = %v after the queue filled, want 2", v)
	}
	fails := withMsg(e.logs.lines(t), msgWebhookFailed)
	if len(fails) != 2 || fails[0][keyPath] != "/3" || !strings.Contains(fails[0][keyError].(string), "queue full") {
		t.Errorf("failure lines %v", fails)
	}
	rc.unblock()
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if v := e.action(t, ActionWebhook, metrics.ResultOK); v != 2 {
		t.Errorf("webhook ok = %v, want 2", v)
	}
	var paths []string
	for _, r := range rc.requests() {
		var p Payload
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p.Path)
	}
	if strings.Join(paths, " ") != "/1 /2" {
		t.Errorf("delivered %v", paths)
	}
}

func TestWebhookNoRetry(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusFound} {
		rc := newReceiver(t, false, code, code, code)
		e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL, Backoff: time.Millisecond}})
		if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
			t.Fatal(err)
		}
		if err := closeWithin(t, e.r, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if n := len(rc.requests()); n != 1 {
			t.Errorf("%d: %d requests, want 1 (no retry, no redirect)", code, n)
		}
		if v := e.action(t, ActionWebhook, metrics.ResultError); v != 1 {
			t.Errorf("%d: webhook error = %v", code, v)
		}
	}
}

func TestWebhookCAFile(t *testing.T) {
	rc := newReceiver(t, true)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL, CAFile: ca}})
	if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
		t.Fatal(err)
	}
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if v := e.action(t, ActionWebhook, metrics.ResultOK); v != 1 {
		t.Errorf("with the CA: webhook ok = %v", v)
	}

	// Without it, the test server's certificate is not trusted.
	e = newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL, Attempts: 1}})
	if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
		t.Fatal(err)
	}
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if v := e.action(t, ActionWebhook, metrics.ResultError); v != 1 {
		t.Errorf("without the CA: webhook error = %v", v)
	}
	fails := withMsg(e.logs.lines(t), msgWebhookFailed)
	if len(fails) != 1 || !strings.Contains(fails[0][keyError].(string), "certificate") {
		t.Errorf("failure lines %v", fails)
	}
}

// TestWebhookClose checks that Close gives up on a stuck receiver when its
// context ends, counting what it abandons, and that findings handled after
// Close are counted as errors.
func TestWebhookClose(t *testing.T) {
	rc := newReceiver(t, false)
	rc.block = true
	e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL, Timeout: time.Minute}})
	for _, p := range []string{"/1", "/2"} {
		if err := e.r.Handle(t.Context(), changed(p, []byte("a"), []byte("b")), nil); err != nil {
			t.Fatal(err)
		}
	}
	<-rc.entered
	if err := closeWithin(t, e.r, 50*time.Millisecond); err == nil {
		t.Error("Close with a stuck receiver: no error")
	}
	if v := e.action(t, ActionWebhook, metrics.ResultError); v != 2 {
		t.Errorf("webhook error = %v after Close, want 2 (in flight and queued)", v)
	}
	if err := e.r.Handle(t.Context(), changed("/3", []byte("a"), []byte("b")), nil); err != nil {
		t.Fatal(err)
	}
	if v := e.action(t, ActionWebhook, metrics.ResultError); v != 3 {
		t.Errorf("webhook error = %v after a finding past Close", v)
	}
	if err := closeWithin(t, e.r, time.Second); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestWebhookTokenRotated checks that the token is read at each delivery.
func TestWebhookTokenRotated(t *testing.T) {
	rc := newReceiver(t, false)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL, TokenFile: tok}})
	sent := 0
	send := func() {
		if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
			t.Fatal(err)
		}
		sent++
		deadline := time.Now().Add(10 * time.Second)
		for e.action(t, ActionWebhook, metrics.ResultOK) < float64(sent) {
			if time.Now().After(deadline) {
				t.Fatal("delivery did not finish")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	send()
	if err := os.WriteFile(tok, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	send()
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := rc.requests()
	if len(reqs) != 2 || reqs[0].header.Get("Authorization") != "Bearer one" || reqs[1].header.Get("Authorization") != "Bearer two" {
		t.Errorf("%d requests, tokens %q then %q", len(reqs), reqs[0].header.Get("Authorization"), reqs[len(reqs)-1].header.Get("Authorization"))
	}
}

// TestWebhookInvalidUTF8 checks the payload keeps a raw path recoverable.
func TestWebhookInvalidUTF8(t *testing.T) {
	p := NewPayload(compare.Finding{Path: "/a\xff", Kind: compare.Removed, Old: regular("/a\xff", nil)}, time.Unix(0, 0))
	if p.PathB64 != "L2H/" || p.New != nil || p.Old == nil || p.Attributes == nil {
		t.Errorf("payload %+v", p)
	}
}
