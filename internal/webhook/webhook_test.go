package webhook

import (
	"bufio"
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
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podfim/podfim/internal/webhook/certs"
	"github.com/podfim/podfim/internal/webhook/certs/certstest"
)

// TestWebhookServes runs the webhook in the files mode on loopback: it
// answers an AdmissionReview over TLS, serves its probes and metrics, picks
// up a renewed certificate, and shuts down on cancel.
func TestWebhookServes(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func() *x509.CertPool {
		b, err := certs.NewBundle(time.Now(), certs.Names{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, b.Cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, b.Key, 0o600); err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(b.CACert)
		return pool
	}
	pool := write()
	cfg := Config{Inject: *testConfig(), Listen: "127.0.0.1:0", Mode: TLSFiles, Files: &certs.Files{CertFile: certFile, KeyFile: keyFile}, Shutdown: 5 * time.Second}
	base, stop := startWebhook(t, cfg)
	client := func(pool *x509.CertPool) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	}
	c := client(pool)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := c.Get(base + p)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	review, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: []byte(`{"metadata":{"annotations":{"podfim.io/respond":"log,restore"}},"spec":{"containers":[{"name":"app"}]}}`)}},
	})
	resp, err := c.Post(base+"/mutate", "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil || !out.Response.Allowed || !bytes.Contains(out.Response.Patch, []byte("--respond=log,restore")) {
		t.Fatalf("%v %+v", err, out.Response)
	}
	resp.Body.Close()
	resp, err = c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`podfim_webhook_admissions_total{result="injected"} 1`, `podfim_webhook_admissions_total{result="rejected"} 0`, "podfim_webhook_certificate_expiry_timestamp_seconds"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// cert-manager renews: the new certificate is served within a second
	// or so, without a restart.
	pool2 := write()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := client(pool2).Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// startWebhook runs the webhook of cfg on the address cfg listens on
// (port 0: any) and returns its base URL once it listens; stop cancels it
// and returns what Run returned.
func startWebhook(t *testing.T, cfg Config) (base string, stop func() error) {
	t.Helper()
	addr := make(chan string, 1)
	cfg.Listening = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, discard()) }()
	select {
	case a := <-addr:
		base = "https://" + a
	case err := <-done:
		t.Fatalf("the webhook did not start: %v", err)
	}
	return base, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("no shutdown within 15 s")
		}
	}
}

// TestWebhookSelfSigned runs the self-signed mode against an in-memory API:
// the CA is created in the Secret, the replica is not ready until the
// configuration exists and trusts the CA, then it is.
func TestWebhookSelfSigned(t *testing.T) {
	api := certstest.New()
	cfg := Config{Inject: *testConfig(), Listen: "127.0.0.1:0", Mode: TLSSelfSigned, Shutdown: 5 * time.Second,
		Store:         &certs.Store{Namespace: "podfim", Name: "podfim-webhook-tls", Names: certs.Names{IPs: []net.IP{net.ParseIP("127.0.0.1")}}},
		WebhookConfig: "podfim", Publish: 50 * time.Millisecond,
		NewAPI: func() (certs.API, error) { return api, nil }}
	base, stop := startWebhook(t, cfg)
	api.Mu.Lock()
	ca := api.Secrets["podfim/podfim-webhook-tls"].Data[certs.KeyCACert]
	api.Mu.Unlock()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA in the Secret")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	readyz := func() int {
		resp, err := c.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("the serving certificate does not chain to the Secret's CA: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("ready (%d) without a webhook configuration to trust the CA", code)
	}
	api.Mu.Lock()
	api.Configs["podfim"] = &admregv1.MutatingWebhookConfiguration{Webhooks: []admregv1.MutatingWebhook{{Name: "namespace.inject.podfim.io"}}}
	api.Mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for readyz() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("not ready after the configuration appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	api.Mu.Lock()
	got := api.Configs["podfim"].Webhooks[0].ClientConfig.CABundle
	api.Mu.Unlock()
	if !bytes.Equal(got, ca) {
		t.Error("the caBundle is not the Secret's CA")
	}
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestConnectionLimits: a half-open connection (TCP, no TLS handshake) is
// closed after HeaderTimeout and gives its slot back, so a client queued
// behind MaxConnections of them is served; HTTP/2 is not offered.
// TestLimitListener checks the cap itself.
func TestConnectionLimits(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	b, err := certs.NewBundle(time.Now(), certs.Names{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(os.WriteFile(certFile, b.Cert, 0o600), os.WriteFile(keyFile, b.Key, 0o600)); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACert)
	cfg := Config{Inject: *testConfig(), Listen: "127.0.0.1:0", Mode: TLSFiles, Files: &certs.Files{CertFile: certFile, KeyFile: keyFile},
		Shutdown: 5 * time.Second, Limits: Limits{MaxConnections: 2, HeaderTimeout: 300 * time.Millisecond}}
	base, stop := startWebhook(t, cfg)
	addr := strings.TrimPrefix(base, "https://")

	// Two silent connections take both slots; each is closed by the
	// server after HeaderTimeout (the TLS handshake's deadline).
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// A TLS client that offers h2 gets HTTP/1.1 once a slot frees up.
	got := make(chan error, 1)
	go func() {
		tc := &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", addr, tc)
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			got <- fmt.Errorf("negotiated %q", p)
			return
		}
		got <- nil
	}()
	for _, c := range silent {
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("a silent connection was not closed by the server: %d, %v", n, err)
		}
	}
	if err := <-got; err != nil {
		t.Errorf("the waiting client: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestSlowBody: a review that announces a body and trickles it holds its
// decoding slot only for BodyTimeout (here far below the server's
// ReadTimeout), then gets a 400, and the slot serves the next review.
func TestSlowBody(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	b, err := certs.NewBundle(time.Now(), certs.Names{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(os.WriteFile(certFile, b.Cert, 0o600), os.WriteFile(keyFile, b.Key, 0o600)); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACert)
	cfg := Config{Inject: *testConfig(), Listen: "127.0.0.1:0", Mode: TLSFiles, Files: &certs.Files{CertFile: certFile, KeyFile: keyFile},
		Shutdown: 5 * time.Second, Limits: Limits{MaxInFlight: 1, QueueWait: time.Minute, BodyTimeout: 300 * time.Millisecond, ReadTimeout: time.Hour}}
	base, stop := startWebhook(t, cfg)
	c, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\""); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the slow body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("slow body: %d", resp.StatusCode)
	}
	// The one slot is free again: a review is answered (QueueWait is a
	// minute, so it would wait for it rather than fail).
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := reviewBody(admissionv1.Create, "Pod", `{"spec":{"containers":[{"name":"app"}]}}`)
	r2, err := client.Post(base+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		t.Errorf("the next review: %d", r2.StatusCode)
	}
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
