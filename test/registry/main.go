// Command registry is the OCI registry of podfim's test cluster
// (test/cluster starts it at `cluster up`): go-containerregistry's
// pkg/registry with the referrers API (OCI 1.1), on a loopback address
// only. With -state DIR it keeps blobs (DIR/blobs) and manifests, and so
// tags and referrers (DIR/manifests.jsonl, a journal replayed at start),
// on disk: a restart of the registry, or of the cluster, loses nothing. It lives in the product module because that module already
// requires go-containerregistry; test/cluster's own module must not (its
// requirements are Kubernetes 1.34.4's, and any change rebuilds it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:5000", "loopback address to listen on")
	state := flag.String("state", "", "directory for blobs and the manifest journal: everything survives a restart (default: in memory)")
	blobs := flag.String("blobs", "", "directory for blobs only, manifests in memory (superseded by -state)")
	referrers := flag.Bool("referrers", true, "serve the OCI 1.1 referrers API (false: clients use the fallback tag)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: only a loopback address is allowed", *addr)
	}
	h, closer, err := newHandler(*state, *blobs, *referrers, log.New(os.Stderr, "", log.LstdFlags))
	if err != nil {
		return err
	}
	defer closer.Close()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("serving on http://%s (referrers API: %v, state: %q)", l.Addr(), *referrers, *state)
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler returns the registry: with state, blobs in state/blobs and
// the manifests journalled to (and replayed from) state/manifests.jsonl;
// otherwise blobs in the directory blobs (or memory) and manifests in
// memory.
func newHandler(state, blobs string, referrers bool, logger *log.Logger) (http.Handler, io.Closer, error) {
	if state != "" {
		blobs = filepath.Join(state, "blobs")
	}
	opts := []registry.Option{registry.WithReferrersSupport(referrers), registry.Logger(logger)}
	if blobs != "" {
		if err := os.MkdirAll(blobs, 0o755); err != nil {
			return nil, nil, err
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)))
	}
	h := registry.New(opts...)
	if state == "" {
		return h, io.NopCloser(nil), nil
	}
	j, n, err := openJournal(filepath.Join(state, "manifests.jsonl"), h)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to restore the manifests from %s: %w", state, err)
	}
	logger.Printf("restored %d manifest requests from %s", n, state)
	return j.wrap(h), j, nil
}
