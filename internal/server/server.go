// Package server owns the sidecar's HTTP endpoints and readiness. The
// endpoints are read-only: GET /metrics, /healthz and /readyz, nothing else,
// so a compromised neighbour on the pod network can learn the sidecar's
// state but never change it. The metrics it serves are package metrics';
// it is a leaf, so the stages that count never import an HTTP server.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the HTTP server. Probes and scrapes are small requests; the
// limits only keep a slow or hostile client from holding connections.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second // above metricsTimeout, so a slow gather still gets its 503
	idleTimeout       = 60 * time.Second
	// maxHeaderBytes bounds a request's header (net/http allows 4 KiB
	// more): probes and scrapes send a few hundred bytes, and every byte
	// allowed is memory a flood of slow connections can hold.
	maxHeaderBytes  = 8 << 10
	metricsTimeout  = 20 * time.Second
	metricsInFlight = 4
	// ShutdownTimeout bounds the graceful shutdown once Run's context ends.
	ShutdownTimeout = 5 * time.Second
)

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	addr      string
	srv       *http.Server
	listening chan struct{}

	maxConns int
	evicted  func()

	mu      sync.Mutex
	ln      net.Listener
	started bool
}

// New returns a server that will listen on addr (host:port; ":0" picks a
// free port) once Run is called. reg is gathered by /metrics; ready decides
// /readyz (nil: always ready, see Ready); health decides /healthz (nil:
// always healthy).
func New(addr string, reg *prometheus.Registry, ready Readiness, health func() error) *Server {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{addr: addr, listening: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           busy(Handler(reg, ready, health)),
		ConnContext:       connContext,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	return s
}

// LimitConns sets the most connections the server holds (0: DefaultMaxConns)
// and a function called for each connection closed to make room for a
// newer one or refused at the cap (see connLimiter). Call it before Run.
func (s *Server) LimitConns(max int, evicted func()) {
	s.maxConns, s.evicted = max, evicted
}

// Handler returns the read-only handler that Server serves: any method but
// GET and HEAD is answered 405, any other path 404.
func Handler(reg *prometheus.Registry, ready Readiness, health func() error) http.Handler {
	routes := map[string]http.Handler{
		"/metrics": promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			// A monitor keeps reporting while part of it is broken.
			ErrorHandling:       promhttp.ContinueOnError,
			Registry:            reg, // counts promhttp_metric_handler_errors_total
			MaxRequestsInFlight: metricsInFlight,
			Timeout:             metricsTimeout,
		}),
		"/healthz": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if health != nil {
				if err := health(); err != nil {
					text(w, http.StatusInternalServerError, err.Error())
					return
				}
			}
			text(w, http.StatusOK, "ok")
		}),
		"/readyz": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if ok, reasons := Ready(ready); !ok {
				text(w, http.StatusServiceUnavailable, strings.Join(reasons, "\n"))
				return
			}
			text(w, http.StatusOK, "ok")
		}),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "method not allowed: the endpoints are read-only")
			return
		}
		h, ok := routes[r.URL.Path]
		if !ok {
			text(w, http.StatusNotFound, "not found")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// text writes a plain-text response ending in a newline.
func text(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}

// Run listens and serves until ctx ends, then shuts down gracefully,
// waiting at most ShutdownTimeout for requests in flight. It returns at once
// with the error when it cannot listen (the port is taken, say), and nil
// after a shutdown caused by ctx. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("server: Run called twice")
	}
	s.started = true
	s.mu.Unlock()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %q: %w", s.addr, err)
	}
	ln = newConnLimiter(ln, s.maxConns, s.evicted)
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	close(s.listening)

	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		// Serve closes the listener itself when it fails.
		return fmt.Errorf("failed to serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err = s.srv.Shutdown(sctx)
	if err != nil {
		// Requests still running after the timeout are cut off.
		_ = s.srv.Close()
		err = fmt.Errorf("failed to shut down the server on %s gracefully: %w", ln.Addr(), err)
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Addr returns the address the server listens on (with the port the kernel
// chose for ":0") once Run is listening, and the configured address before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Listening returns a channel that is closed once Run is listening, so
// callers and tests can read Addr without polling. It is never closed if
// Run fails to listen.
func (s *Server) Listening() <-chan struct{} { return s.listening }
