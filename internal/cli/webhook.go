package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/webhook"
	"github.com/podfim/podfim/internal/webhook/certs"
)

// webhookFlags are the settings of `podfim webhook`.
type webhookFlags struct {
	listen         string
	certFile       string
	keyFile        string
	secret         string
	namespace      string
	config         string
	service        string
	dnsNames       []string
	ips            []string
	publish        time.Duration
	image          string
	pullPolicy     string
	sidecarEnv     []string
	respond        []string
	privileges     string
	evidenceMax    int64
	shutdownPeriod time.Duration
	maxConns       int
	maxInFlight    int
	queueWait      time.Duration
	logLevel       string
}

func (f *webhookFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "listen", ":8443", "HTTPS address of /mutate, /healthz, /readyz and /metrics")
	fs.StringVar(&f.certFile, "cert-file", "", "serving certificate (PEM), e.g. cert-manager's Secret mounted; reloaded when it changes. With --key-file; excludes --tls-secret")
	fs.StringVar(&f.keyFile, "key-file", "", "private key of --cert-file (PEM)")
	fs.StringVar(&f.secret, "tls-secret", "", "self-signed mode: the Secret (in --namespace) that holds the CA and serving certificate the webhook makes, shared by its replicas")
	fs.StringVar(&f.namespace, "namespace", "", "the webhook's namespace (default: $POD_NAMESPACE from the downward API)")
	fs.StringVar(&f.config, "webhook-config", "", "self-signed mode: the MutatingWebhookConfiguration whose caBundle the webhook keeps set to its CA")
	fs.StringVar(&f.service, "service", "", "self-signed mode: the webhook's Service; its DNS names go into the serving certificate")
	fs.StringSliceVar(&f.dnsNames, "cert-dns", nil, "self-signed mode: more DNS names for the serving certificate")
	fs.StringSliceVar(&f.ips, "cert-ip", nil, "self-signed mode: IP addresses for the serving certificate (e.g. 127.0.0.1 for a url clientConfig on a hostNetwork pod)")
	fs.DurationVar(&f.publish, "publish-interval", time.Minute, "self-signed mode: how often the caBundle is checked and put back (replacing the configuration empties it)")
	fs.StringVar(&f.image, "sidecar-image", "", "the podfim image of injected sidecars (required)")
	fs.StringVar(&f.pullPolicy, "sidecar-pull-policy", string(corev1.PullIfNotPresent), "imagePullPolicy of injected sidecars: Always, IfNotPresent or Never")
	fs.StringArrayVar(&f.sidecarEnv, "sidecar-env", nil, "NAME=VALUE added to every injected sidecar's environment (repeatable)")
	fs.StringSliceVar(&f.respond, "default-respond", []string{"log", "metric", "unready"}, "response of pods that do not annotate podfim.io/respond")
	fs.StringVar(&f.privileges, "sidecar-privileges", inject.PrivilegesDefault, "privileges of sidecars whose pod does not annotate podfim.io/privileges: default (uid 0, SYS_PTRACE, DAC_READ_SEARCH and the actions' capabilities) or restricted (the app's uid and gid, no capability: Pod Security restricted; docs/security.md)")
	fs.Int64Var(&f.evidenceMax, "default-evidence-max-bytes", 0, "--evidence-max-bytes of sidecars whose pod does not annotate podfim.io/evidence-max-bytes (0: the sidecar's own default, 64 MiB)")
	fs.DurationVar(&f.shutdownPeriod, "shutdown-timeout", 10*time.Second, "how long in-flight admissions may finish after SIGTERM")
	d := webhook.DefaultLimits()
	fs.IntVar(&f.maxConns, "max-connections", d.MaxConnections, "most client connections open at once; more wait in the kernel's accept queue")
	fs.IntVar(&f.maxInFlight, "max-in-flight", d.MaxInFlight, "most AdmissionReviews read and decoded at once (each up to 4 MiB); bounds the webhook's memory")
	fs.DurationVar(&f.queueWait, "queue-wait", d.QueueWait, "how long a review waits for a decoding slot before it is refused (429)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

// build validates the flags; nothing has started yet.
func (f *webhookFlags) build(getenv func(string) string) (webhook.Config, *slog.Logger, error) {
	var errs []error
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := webhook.Config{
		Listen:        f.listen,
		WebhookConfig: f.config,
		Publish:       f.publish,
		Shutdown:      f.shutdownPeriod,
		Version:       versionString(),
		Limits:        webhook.Limits{MaxConnections: f.maxConns, MaxInFlight: f.maxInFlight, QueueWait: f.queueWait},
		Inject: inject.Config{
			Image:       f.image,
			PullPolicy:  corev1.PullPolicy(f.pullPolicy),
			Respond:     f.respond,
			Privileges:  f.privileges,
			EvidenceMax: f.evidenceMax,
		},
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", f.listen, err))
	}
	for _, kv := range f.sidecarEnv {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("--sidecar-env %q: want NAME=VALUE", kv))
			continue
		}
		cfg.Inject.Env = append(cfg.Inject.Env, corev1.EnvVar{Name: name, Value: value})
	}
	if err := cfg.Inject.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--sidecar-image, --sidecar-pull-policy, --sidecar-env, --default-respond, --sidecar-privileges, --default-evidence-max-bytes: %w", err))
	}
	if f.shutdownPeriod <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	if f.maxConns < 1 || f.maxInFlight < 1 || f.queueWait <= 0 {
		errs = append(errs, errors.New("--max-connections, --max-in-flight and --queue-wait must be positive"))
	}
	errs = append(errs, f.buildTLS(&cfg, getenv)...)
	if err := errors.Join(errs...); err != nil {
		return cfg, nil, fail(ExitUsage, fmt.Errorf("invalid webhook configuration: %w", err))
	}
	return cfg, log, nil
}

// buildTLS picks the TLS mode of the flags and checks its settings.
func (f *webhookFlags) buildTLS(cfg *webhook.Config, getenv func(string) string) []error {
	var errs []error
	files := f.certFile != "" || f.keyFile != ""
	self := f.secret != "" || f.config != ""
	switch {
	case files && self:
		errs = append(errs, errors.New("--cert-file/--key-file and --tls-secret/--webhook-config are two TLS modes: choose one"))
	case files:
		cfg.Mode = webhook.TLSFiles
		if f.certFile == "" || f.keyFile == "" {
			errs = append(errs, errors.New("--cert-file and --key-file go together"))
		}
		cfg.Files = &certs.Files{CertFile: f.certFile, KeyFile: f.keyFile}
	case self:
		cfg.Mode = webhook.TLSSelfSigned
		ns := f.namespace
		if ns == "" {
			ns = getenv(kube.EnvNamespace)
		}
		if f.secret == "" || f.config == "" {
			errs = append(errs, errors.New("the self-signed mode needs both --tls-secret and --webhook-config"))
		}
		if ns == "" {
			errs = append(errs, fmt.Errorf("the self-signed mode needs the webhook's namespace: --namespace or %s from the downward API", kube.EnvNamespace))
		}
		if f.publish <= 0 {
			errs = append(errs, errors.New("--publish-interval must be positive"))
		}
		names := certs.Names{DNS: f.dnsNames}
		if f.service != "" {
			s := f.service
			names.DNS = append([]string{s + "." + ns + ".svc", s, s + "." + ns, s + "." + ns + ".svc.cluster.local"}, names.DNS...)
		}
		for _, v := range f.ips {
			ip := net.ParseIP(v)
			if ip == nil {
				errs = append(errs, fmt.Errorf("--cert-ip %q is not an IP address", v))
				continue
			}
			names.IPs = append(names.IPs, ip)
		}
		if len(names.DNS) == 0 && len(names.IPs) == 0 {
			errs = append(errs, errors.New("the serving certificate needs a name: --service, --cert-dns or --cert-ip"))
		}
		cfg.Store = &certs.Store{Namespace: ns, Name: f.secret, Names: names}
		cfg.NewAPI = inClusterAPI
	default:
		errs = append(errs, errors.New("no TLS: give --cert-file and --key-file (e.g. from cert-manager), or --tls-secret and --webhook-config (self-signed)"))
	}
	return errs
}

// inClusterAPI is the Kubernetes API client of the self-signed mode.
func inClusterAPI() (certs.API, error) {
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("the self-signed mode needs the Kubernetes API from inside a pod: %w", err)
	}
	return certs.NewREST(rc, kube.UserAgent())
}

// webhookExit maps what webhook.Run returns to an exit code.
func webhookExit(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, webhook.ErrCertificate):
		return fail(ExitIO, err)
	case errors.Is(err, webhook.ErrNoAPI):
		return fail(ExitUsage, err)
	}
	return fail(ExitError, err)
}

func newWebhookCmd(_ *streams) *cobra.Command {
	var f webhookFlags
	c := &cobra.Command{
		Use:   "webhook",
		Short: "Serve the mutating admission webhook that injects the podfim sidecar",
		Long: `webhook serves POST /mutate over HTTPS for a MutatingWebhookConfiguration.
For each pod created in a namespace or with a pod label podfim.io/inject=enabled
(the configuration's selectors), it adds the podfim sidecar container,
shareProcessNamespace, the sidecar's private state volume, its capabilities and
probes, configured by the pod's podfim.io/ annotations (docs/webhook.md). A
pod with invalid annotations is denied with the annotation and the problem.

TLS, one of:
  --tls-secret S --webhook-config C [--service SVC] [--cert-ip IP]
      self-signed: a CA and serving certificate kept in Secret S (created if
      absent and shared by the replicas), the CA published in the caBundle
      of configuration C and kept there.
  --cert-file F --key-file K
      files (cert-manager): reloaded when they change.

/healthz, /readyz and /metrics (podfim_webhook_*) are served on the same
address, HTTP/1.1 only. Connections (--max-connections), reviews decoded at
once (--max-in-flight) and request sizes (4 MiB) are bounded, so that no
client can exhaust the webhook's memory (docs/webhook.md, "Limits").
SIGTERM stops accepting connections and lets admissions in flight finish
(--shutdown-timeout).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, log, err := f.build(os.Getenv)
			if err != nil {
				return err
			}
			return webhookExit(webhook.Run(c.Context(), cfg, log))
		},
	}
	f.register(c.Flags())
	return c
}
