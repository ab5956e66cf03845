package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	admissionv1 "k8s.io/api/admission/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podfim/podfim/internal/inject/certs"
	"github.com/podfim/podfim/internal/inject/certs/certstest"
)

func parseWebhook(t *testing.T, args []string, env map[string]string) (webhookConfig, error) {
	t.Helper()
	var f webhookFlags
	fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.build(func(k string) string { return env[k] })
}

func TestWebhookFlags(t *testing.T) {
	img := "--sidecar-image=localhost/podfim:dev"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{img}, "no TLS"},
		{[]string{"--cert-file=a", "--key-file=b"}, "image is required"},
		{[]string{img, "--cert-file=a"}, "--cert-file and --key-file go together"},
		{[]string{img, "--cert-file=a", "--key-file=b", "--tls-secret=s"}, "two TLS modes"},
		{[]string{img, "--tls-secret=s", "--webhook-config=c", "--service=svc"}, "namespace"},
		{[]string{img, "--tls-secret=s", "--namespace=n"}, "both --tls-secret and --webhook-config"},
		{[]string{img, "--tls-secret=s", "--webhook-config=c", "--namespace=n"}, "needs a name"},
		{[]string{img, "--tls-secret=s", "--webhook-config=c", "--namespace=n", "--cert-ip=localhost"}, "not an IP address"},
		{[]string{img, "--cert-file=a", "--key-file=b", "--default-respond=log,explode"}, `Unsupported value: "explode"`},
		{[]string{img, "--cert-file=a", "--key-file=b", "--sidecar-env=NOEQUALS"}, "NAME=VALUE"},
		{[]string{img, "--cert-file=a", "--key-file=b", "--sidecar-pull-policy=Sometimes"}, "Sometimes"},
		{[]string{img, "--cert-file=a", "--key-file=b", "--listen=8443"}, "--listen"},
		{[]string{img, "--cert-file=a", "--key-file=b", "--log-level=loud"}, "--log-level"},
	} {
		_, err := parseWebhook(t, tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || ExitCode(err) != ExitUsage {
			t.Errorf("%q: %v (exit %d), want a usage error with %q", tt.args, err, ExitCode(err), tt.want)
		}
	}
	cfg, err := parseWebhook(t, []string{img, "--tls-secret=s", "--webhook-config=c", "--service=podfim-webhook", "--cert-ip=127.0.0.1",
		"--sidecar-env=KUBERNETES_SERVICE_HOST=127.0.0.1"}, map[string]string{"POD_NAMESPACE": "podfim"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode != tlsSelfSigned || cfg.store.Namespace != "podfim" || cfg.store.Names.DNS[0] != "podfim-webhook.podfim.svc" ||
		!cfg.store.Names.IPs[0].Equal(net.ParseIP("127.0.0.1")) || cfg.inject.Env[0].Value != "127.0.0.1" {
		t.Errorf("%+v %+v", cfg.store, cfg.inject)
	}
}

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
	cfg, err := parseWebhook(t, []string{"--sidecar-image=localhost/podfim:dev", "--cert-file=" + certFile, "--key-file=" + keyFile, "--listen=127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, stop := startWebhook(t, cfg, nil)
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
// and returns what runWebhook returned. newAPI is the self-signed mode's
// API.
func startWebhook(t *testing.T, cfg webhookConfig, newAPI func() (certs.API, error)) (base string, stop func() error) {
	t.Helper()
	cfg.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	addr := make(chan string, 1)
	cfg.listening = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- runWebhook(ctx, cfg, newAPI) }()
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

// TestSidecarPolicyYAML: the inline policy the webhook passes in
// PODFIM_POLICY_YAML reaches the sidecar's configuration, and is checked.
func TestSidecarPolicyYAML(t *testing.T) {
	pol := `{"version":1,"rules":[{"path":"/www","preset":"ReadOnly"}]}`
	f, err := parseSidecar(t, nil, map[string]string{"PODFIM_POLICY_YAML": pol})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := f.build(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Policy.Rules) != 1 || cfg.Policy.Rules[0].Path != "/www" {
		t.Errorf("policy %+v", cfg.Policy)
	}
	f, _ = parseSidecar(t, nil, map[string]string{"PODFIM_POLICY_YAML": `{"version":1,"rules":[{"path":"www"}]}`})
	if _, _, err := f.build(os.Getenv); ExitCode(err) != ExitPolicy || !strings.Contains(err.Error(), "--policy-yaml") {
		t.Errorf("bad inline policy: %v", err)
	}
	f, _ = parseSidecar(t, []string{"--policy=/x.yaml"}, map[string]string{"PODFIM_POLICY_YAML": pol})
	if _, _, err := f.build(os.Getenv); ExitCode(err) != ExitUsage {
		t.Errorf("both: %v", err)
	}
}

// TestWebhookSelfSigned runs the self-signed mode against an in-memory API:
// the CA is created in the Secret, the replica is not ready until the
// configuration exists and trusts the CA, then it is.
func TestWebhookSelfSigned(t *testing.T) {
	api := certstest.New()
	cfg, err := parseWebhook(t, []string{"--sidecar-image=localhost/podfim:dev", "--tls-secret=podfim-webhook-tls", "--webhook-config=podfim",
		"--namespace=podfim", "--cert-ip=127.0.0.1", "--listen=127.0.0.1:0", "--publish-interval=50ms"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, stop := startWebhook(t, cfg, func() (certs.API, error) { return api, nil })
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
