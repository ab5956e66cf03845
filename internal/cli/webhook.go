package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/inject/certs"
	"github.com/podfim/podfim/internal/kube"
)

// Log keys of the webhook command.
const (
	keyAddr    = "addr"
	keyMode    = "tls_mode"
	keyErr     = "error"
	keyExpires = "expires"
)

// renewCheck is how often a self-signed replica looks at its Secret for a
// renewal (its own, 30 days before expiry, or another replica's). Often:
// a replica that serves another CA than the one in the Secret puts its own
// CA back into the caBundle at each publish check, and the API server then
// refuses the other replicas' certificates. One GET of a Secret a minute
// is cheap.
const renewCheck = time.Minute

// TLS modes.
const (
	tlsSelfSigned = "self-signed"
	tlsFiles      = "files"
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
	shutdownPeriod time.Duration
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
	fs.DurationVar(&f.shutdownPeriod, "shutdown-timeout", 10*time.Second, "how long in-flight admissions may finish after SIGTERM")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

// webhookConfig is the validated configuration of the webhook.
type webhookConfig struct {
	inject   inject.Config
	listen   string
	mode     string
	files    *certs.Files
	store    *certs.Store // self-signed mode, without its API (set at run)
	config   string
	publish  time.Duration
	shutdown time.Duration
	log      *slog.Logger
	// listening, when set, gets the address once the server listens (tests
	// listen on port 0).
	listening func(addr string)
}

// build validates the flags; nothing has started yet.
func (f *webhookFlags) build(getenv func(string) string) (webhookConfig, error) {
	var errs []error
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	cfg := webhookConfig{
		listen:   f.listen,
		config:   f.config,
		publish:  f.publish,
		shutdown: f.shutdownPeriod,
		log:      slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		inject: inject.Config{
			Image:      f.image,
			PullPolicy: corev1.PullPolicy(f.pullPolicy),
			Respond:    f.respond,
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
		cfg.inject.Env = append(cfg.inject.Env, corev1.EnvVar{Name: name, Value: value})
	}
	if err := cfg.inject.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--sidecar-image, --sidecar-pull-policy, --sidecar-env, --default-respond: %w", err))
	}
	if f.shutdownPeriod <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	files := f.certFile != "" || f.keyFile != ""
	self := f.secret != "" || f.config != ""
	switch {
	case files && self:
		errs = append(errs, errors.New("--cert-file/--key-file and --tls-secret/--webhook-config are two TLS modes: choose one"))
	case files:
		cfg.mode = tlsFiles
		if f.certFile == "" || f.keyFile == "" {
			errs = append(errs, errors.New("--cert-file and --key-file go together"))
		}
		cfg.files = &certs.Files{CertFile: f.certFile, KeyFile: f.keyFile}
	case self:
		cfg.mode = tlsSelfSigned
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
		cfg.store = &certs.Store{Namespace: ns, Name: f.secret, Names: names}
	default:
		errs = append(errs, errors.New("no TLS: give --cert-file and --key-file (e.g. from cert-manager), or --tls-secret and --webhook-config (self-signed)"))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fail(ExitUsage, fmt.Errorf("invalid webhook configuration: %w", err))
	}
	return cfg, nil
}

// webhookMetrics are the command's own metrics; the admission metrics are
// inject's.
type webhookMetrics struct {
	expiry    prometheus.Gauge
	published prometheus.Gauge
}

func newWebhookMetrics(reg prometheus.Registerer) (*webhookMetrics, error) {
	m := &webhookMetrics{
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_webhook_certificate_expiry_timestamp_seconds",
			Help: "When the serving certificate in use expires (Unix time).",
		}),
		published: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_webhook_ca_published",
			Help: "1 when the last check found the CA in every caBundle of the MutatingWebhookConfiguration (self-signed mode), else 0.",
		}),
	}
	for _, c := range []prometheus.Collector{m.expiry, m.published, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// runWebhook serves until ctx ends, then shuts down gracefully. newAPI makes
// the Kubernetes API client of the self-signed mode.
func runWebhook(ctx context.Context, cfg webhookConfig, newAPI func() (certs.API, error)) error {
	log := cfg.log
	reg := prometheus.NewRegistry()
	im, err := inject.NewMetrics(reg)
	if err != nil {
		return err
	}
	wm, err := newWebhookMetrics(reg)
	if err != nil {
		return err
	}
	var ready atomic.Bool
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	switch cfg.mode {
	case tlsFiles:
		if err := cfg.files.Load(); err != nil {
			return fail(ExitIO, err)
		}
		tlsCfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := cfg.files.GetCertificate(h)
			if err == nil && c.Leaf != nil {
				wm.expiry.Set(float64(c.Leaf.NotAfter.Unix()))
			}
			return c, err
		}
		if c := cfg.files.Current(); c.Leaf != nil {
			wm.expiry.Set(float64(c.Leaf.NotAfter.Unix()))
		}
		ready.Store(true)
	case tlsSelfSigned:
		api, err := newAPI()
		if err != nil {
			return fail(ExitUsage, err)
		}
		cfg.store.API = api
		bundle, err := cfg.store.Ensure(ctx)
		if err != nil {
			return fail(ExitError, err)
		}
		var static certs.Static
		var current atomic.Pointer[certs.Bundle]
		use := func(b certs.Bundle) error {
			if err := static.Set(b); err != nil {
				return err
			}
			current.Store(&b)
			if exp, err := certs.Expiry(b.Cert); err == nil {
				wm.expiry.Set(float64(exp.Unix()))
				log.Info("serving certificate ready", keyMode, cfg.mode, keyExpires, exp)
			}
			return nil
		}
		if err := use(bundle); err != nil {
			return fail(ExitError, err)
		}
		tlsCfg.GetCertificate = static.GetCertificate
		go cfg.store.KeepFresh(ctx, bundle, renewCheck, log, func(b certs.Bundle) {
			if err := use(b); err != nil {
				log.Warn("the renewed certificate is unusable; keeping the current one", keyErr, err)
			}
		})
		caPEM := func() []byte { return current.Load().CACert }
		go certs.KeepPublished(ctx, api, cfg.config, caPEM, cfg.publish, log, func(ok bool) {
			// Not ready until the API server trusts this CA: a replica
			// that cannot publish it (RBAC, a missing configuration)
			// shows up in the Deployment's status.
			ready.Store(ok)
			wm.published.Set(map[bool]float64{true: 1, false: 0}[ok])
		})
	}

	mux := http.NewServeMux()
	mux.Handle("/mutate", cfg.inject.Handler(log, im))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: the CA is not published in the webhook configuration yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: reg}))
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second, // the API server keeps connections open
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug), // TLS probes of scanners are not news
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fail(ExitError, fmt.Errorf("failed to listen on %s: %w", cfg.listen, err))
	}
	log.Info("webhook listening", keyAddr, ln.Addr().String(), keyMode, cfg.mode)
	if cfg.listening != nil {
		cfg.listening(ln.Addr().String())
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return fail(ExitError, err)
	case <-ctx.Done():
	}
	// SIGTERM: the endpoint is being removed; finish what is in flight.
	sctx, scancel := context.WithTimeout(context.Background(), cfg.shutdown)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown did not finish in time", keyErr, err)
	}
	return nil
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
address. SIGTERM stops accepting connections and lets admissions in flight
finish (--shutdown-timeout).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := f.build(os.Getenv)
			if err != nil {
				return err
			}
			return runWebhook(c.Context(), cfg, func() (certs.API, error) {
				rc, err := rest.InClusterConfig()
				if err != nil {
					return nil, fmt.Errorf("the self-signed mode needs the Kubernetes API from inside a pod: %w", err)
				}
				return certs.NewREST(rc, kube.UserAgent())
			})
		},
	}
	f.register(c.Flags())
	return c
}
