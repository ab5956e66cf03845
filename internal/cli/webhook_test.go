package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/podfim/podfim/internal/webhook"
)

func parseWebhook(t *testing.T, args []string, env map[string]string) (webhook.Config, error) {
	t.Helper()
	var f webhookFlags
	fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := f.build(func(k string) string { return env[k] })
	return cfg, err
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
	if cfg.Mode != webhook.TLSSelfSigned || cfg.Store.Namespace != "podfim" || cfg.Store.Names.DNS[0] != "podfim-webhook.podfim.svc" ||
		!cfg.Store.Names.IPs[0].Equal(net.ParseIP("127.0.0.1")) || cfg.Inject.Env[0].Value != "127.0.0.1" || cfg.NewAPI == nil {
		t.Errorf("%+v %+v", cfg.Store, cfg.Inject)
	}
	cfg, err = parseWebhook(t, []string{img, "--cert-file=a", "--key-file=b", "--max-connections=9", "--max-in-flight=2", "--queue-wait=1s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != webhook.TLSFiles || cfg.Limits != (webhook.Limits{MaxConnections: 9, MaxInFlight: 2, QueueWait: time.Second}) {
		t.Errorf("%+v", cfg)
	}
}

// TestWebhookExit: what webhook.Run returns becomes an exit code; unreadable
// certificate files are an I/O error, through the real command.
func TestWebhookExit(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code int
	}{
		{nil, 0},
		{fmt.Errorf("%w: open /x: no such file", webhook.ErrCertificate), ExitIO},
		{fmt.Errorf("%w: not in a pod", webhook.ErrNoAPI), ExitUsage},
		{errors.New("failed to listen"), ExitError},
	} {
		if got := ExitCode(webhookExit(tt.err)); got != tt.code {
			t.Errorf("%v: exit %d, want %d", tt.err, got, tt.code)
		}
	}
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	code := Run(t.Context(), []string{"webhook", "--sidecar-image=x", "--cert-file=" + filepath.Join(dir, "none.crt"), "--key-file=" + filepath.Join(dir, "none.key"), "--listen=127.0.0.1:0"}, &stdout, &stderr)
	if code != ExitIO {
		t.Errorf("missing certificate files: exit %d, want %d (%s)", code, ExitIO, stderr.String())
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
