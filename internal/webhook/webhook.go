// Package webhook serves podfim's mutating admission webhook: its TLS (a CA
// it makes itself, kept in a Secret and published in the caBundle, or
// cert-manager's files), POST /mutate over the pure package inject, the
// probes and /metrics on the same port, bounded against floods, and a
// graceful shutdown. The command (internal/cli/webhook.go) owns the flags,
// their validation and the exit codes; Run returns plain errors, with
// sentinels for the ones the command maps to an exit code of their own.
//
// With failurePolicy Fail a webhook that is down blocks every pod creation
// in the namespaces it serves, so nothing a client sends may exhaust its
// memory: a bounded number of connections (HTTP/1.1 only, a deadline on
// every phase), a bounded number of AdmissionReviews decoded at once, each
// body bounded before it is read and decoded once (docs/webhook.md,
// "Limits").
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/webhook/certs"
)

// Log keys.
const (
	keyAddr    = "addr"
	keyMode    = "tls_mode"
	keyErr     = "error"
	keyExpires = "expires"
	keyUID     = "uid"
	keyNS      = "namespace"
	keyName    = "name"
	keyOutcome = "outcome"
	keyReason  = "reason"
)

// TLSMode is where the serving certificate comes from.
type TLSMode string

// TLS modes.
const (
	// TLSSelfSigned: a CA and serving certificate the webhook makes, kept
	// in a Secret shared by its replicas; the CA is published in the
	// MutatingWebhookConfiguration's caBundle and kept there.
	TLSSelfSigned TLSMode = "self-signed"
	// TLSFiles: certificate files (cert-manager's Secret, mounted),
	// reloaded when they change.
	TLSFiles TLSMode = "files"
)

// Errors Run returns that the command maps to exit codes of their own.
var (
	// ErrCertificate: the certificate files cannot be read or used.
	ErrCertificate = errors.New("the serving certificate is unusable")
	// ErrNoAPI: the self-signed mode has no Kubernetes API client.
	ErrNoAPI = errors.New("no Kubernetes API")
)

// renewCheck is how often a self-signed replica looks at its Secret for a
// renewal (its own, 30 days before expiry, or another replica's). Often:
// a replica that serves another CA than the one in the Secret puts its own
// CA back into the caBundle at each publish check, and the API server then
// refuses the other replicas' certificates. One GET of a Secret a minute
// is cheap.
const renewCheck = time.Minute

// Config is the validated configuration of a webhook.
type Config struct {
	// Inject is what every injected sidecar gets.
	Inject inject.Config
	Listen string
	Mode   TLSMode
	// Files are the certificate files (TLSFiles).
	Files *certs.Files
	// Store keeps the self-signed CA and certificate (TLSSelfSigned); its
	// API is set by Run from NewAPI.
	Store *certs.Store
	// WebhookConfig names the MutatingWebhookConfiguration whose caBundle
	// gets the CA (TLSSelfSigned), checked every Publish.
	WebhookConfig string
	Publish       time.Duration
	// Shutdown is how long admissions in flight may finish after ctx ends.
	Shutdown time.Duration
	Limits   Limits
	Version  string
	// NewAPI makes the Kubernetes API client of the self-signed mode.
	NewAPI func() (certs.API, error)
	// Listening, when set, gets the address once the server listens (tests
	// listen on port 0).
	Listening func(addr string)
}

// Run serves until ctx ends, then lets the admissions in flight finish
// (Config.Shutdown) and returns nil.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.Limits = cfg.Limits.withDefaults()
	reg := prometheus.NewRegistry()
	m, err := metrics.NewWebhook(reg, cfg.Version)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ready atomic.Bool
	tlsCfg, err := serveTLS(ctx, cfg, m, &ready, log)
	if err != nil {
		return err
	}
	srv := newServer(cfg, tlsCfg, newMux(cfg, reg, m, &ready, log), log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", cfg.Listen, err)
	}
	ln = limitListener(ln, cfg.Limits.MaxConnections, m)
	log.Info("webhook listening", keyAddr, ln.Addr().String(), keyMode, string(cfg.Mode))
	if cfg.Listening != nil {
		cfg.Listening(ln.Addr().String())
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	// SIGTERM: the endpoint is being removed; finish what is in flight.
	sctx, scancel := context.WithTimeout(context.Background(), cfg.Shutdown)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown did not finish in time", keyErr, err)
	}
	return nil
}

// newMux routes /mutate, the probes and /metrics.
func newMux(cfg Config, reg *prometheus.Registry, m *metrics.Webhook, ready *atomic.Bool, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/mutate", NewHandler(&cfg.Inject, cfg.Limits, log, m))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: the CA is not published in the webhook configuration yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: reg}))
	return mux
}

// newServer is the HTTPS server: HTTP/1.1 only, a deadline on every phase
// of a connection (docs/webhook.md, "Limits").
func newServer(cfg Config, tlsCfg *tls.Config, h http.Handler, log *slog.Logger) *http.Server {
	// HTTP/2 would multiplex up to 250 streams on one connection, each
	// with its own handler goroutine and up to 1 MiB of buffered body,
	// which the connection cap could not bound (and CVE-2023-44487's rapid
	// reset is one way to abuse it); the API server speaks HTTP/1.1 to
	// webhooks just as well. A non-nil empty TLSNextProto disables it.
	tlsCfg.NextProtos = []string{"http/1.1"}
	return &http.Server{
		Handler:      h,
		TLSConfig:    tlsCfg,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		// The shortest of these also bounds the TLS handshake, so a
		// half-open connection holds its slot for at most 5 s.
		ReadHeaderTimeout: cfg.Limits.HeaderTimeout,
		ReadTimeout:       cfg.Limits.ReadTimeout,
		WriteTimeout:      cfg.Limits.WriteTimeout,
		IdleTimeout:       cfg.Limits.IdleTimeout, // the API server keeps connections open
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug), // TLS probes of scanners are not news
	}
}

// serveTLS prepares the serving certificate of cfg.Mode and starts what
// keeps it current; ready is set once the API server can trust it.
func serveTLS(ctx context.Context, cfg Config, m *metrics.Webhook, ready *atomic.Bool, log *slog.Logger) (*tls.Config, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch cfg.Mode {
	case TLSFiles:
		if err := cfg.Files.Load(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
		}
		tlsCfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := cfg.Files.GetCertificate(h)
			if err == nil && c.Leaf != nil {
				m.SetCertificateExpiry(c.Leaf.NotAfter)
			}
			return c, err
		}
		if c := cfg.Files.Current(); c.Leaf != nil {
			m.SetCertificateExpiry(c.Leaf.NotAfter)
		}
		ready.Store(true)
	case TLSSelfSigned:
		get, err := selfSigned(ctx, cfg, m, ready, log)
		if err != nil {
			return nil, err
		}
		tlsCfg.GetCertificate = get
	default:
		return nil, fmt.Errorf("unknown TLS mode %q", cfg.Mode)
	}
	return tlsCfg, nil
}

// selfSigned makes or loads the shared CA and serving certificate, serves
// the current one, and keeps both it and the caBundle fresh until ctx ends.
func selfSigned(ctx context.Context, cfg Config, m *metrics.Webhook, ready *atomic.Bool, log *slog.Logger) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if cfg.NewAPI == nil {
		return nil, fmt.Errorf("%w: the self-signed mode needs Config.NewAPI", ErrNoAPI)
	}
	api, err := cfg.NewAPI()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoAPI, err)
	}
	store := *cfg.Store
	store.API = api
	bundle, err := store.Ensure(ctx)
	if err != nil {
		return nil, err
	}
	var static certs.Static
	var current atomic.Pointer[certs.Bundle]
	use := func(b certs.Bundle) error {
		if err := static.Set(b); err != nil {
			return err
		}
		current.Store(&b)
		if exp, err := certs.Expiry(b.Cert); err == nil {
			m.SetCertificateExpiry(exp)
			log.Info("serving certificate ready", keyMode, string(cfg.Mode), keyExpires, exp)
		}
		return nil
	}
	if err := use(bundle); err != nil {
		return nil, err
	}
	go store.KeepFresh(ctx, bundle, renewCheck, log, func(b certs.Bundle) {
		if err := use(b); err != nil {
			log.Warn("the renewed certificate is unusable; keeping the current one", keyErr, err)
		}
	})
	caPEM := func() []byte { return current.Load().CACert }
	go certs.KeepPublished(ctx, api, cfg.WebhookConfig, caPEM, cfg.Publish, log, func(ok bool) {
		// Not ready until the API server trusts this CA: a replica that
		// cannot publish it (RBAC, a missing configuration) shows up in
		// the Deployment's status.
		ready.Store(ok)
		m.SetCAPublished(ok)
	})
	return static.GetCertificate, nil
}
