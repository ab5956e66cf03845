// Command registry is the OCI registry of podfim's test cluster
// (test/cluster starts it at `cluster up`): go-containerregistry's
// pkg/registry with the referrers API (OCI 1.1), blobs on disk, manifests
// in memory (they last as long as the cluster), on a loopback address
// only. It lives in the product module because that module already
// requires go-containerregistry; test/cluster's own module must not (its
// requirements are Kubernetes 1.34.4's, and any change rebuilds it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
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
	blobs := flag.String("blobs", "", "directory for blobs (default: in memory)")
	referrers := flag.Bool("referrers", true, "serve the OCI 1.1 referrers API (false: clients use the fallback tag)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: only a loopback address is allowed", *addr)
	}
	opts := []registry.Option{registry.WithReferrersSupport(*referrers), registry.Logger(log.New(os.Stderr, "", log.LstdFlags))}
	if *blobs != "" {
		if err := os.MkdirAll(*blobs, 0o755); err != nil {
			return err
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*blobs)))
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("serving on http://%s (referrers API: %v)", l.Addr(), *referrers)
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
