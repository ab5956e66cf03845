// Command hello is the demo application that podfim protects: the seed's
// "python -m http.server as a non-root user" as a static Go binary. It serves
// one directory (default /www, whose index.html says "Hello, world!") and
// /healthz, refuses to run as root, and shuts down gracefully on SIGTERM.
//
// The directory is served through an os.Root: a symlink in it never leads
// outside it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Page is the content of the page hello writes when it is missing.
const Page = "Hello, world!\n"

// pageMode is the seed's mode for the page: readable by its owner only.
const pageMode fs.FileMode = 0o600

// exit statuses
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

type config struct {
	dir       string
	addr      string
	initPage  bool
	allowRoot bool
	grace     time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, os.Geteuid(), nil)
	stop()
	os.Exit(code)
}

// run parses args and serves until ctx is done. euid is the effective user
// id to check; ready, when not nil, receives the listening address.
func run(ctx context.Context, args []string, stderr io.Writer, euid int, ready chan<- string) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if euid == 0 && !cfg.allowRoot {
		log.Error("refusing to run as root (uid 0); run as a non-root user or pass --allow-root")
		return exitError
	}
	if cfg.initPage {
		created, err := initPage(cfg.dir)
		if err != nil {
			log.Error("cannot write the page", "dir", cfg.dir, "error", err.Error())
			return exitError
		}
		if created {
			log.Info("wrote the page", "path", filepath.Join(cfg.dir, "index.html"), "mode", fmt.Sprintf("%04o", pageMode))
		}
	}
	root, err := os.OpenRoot(cfg.dir)
	if err != nil {
		log.Error("cannot open the directory to serve", "dir", cfg.dir, "error", err.Error())
		return exitError
	}
	defer root.Close()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.addr, "error", err.Error())
		return exitError
	}
	srv := &http.Server{
		Handler:           handler(root),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	log.Info("serving", "dir", cfg.dir, "addr", ln.Addr().String(), "uid", euid)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		log.Error("server failed", "error", err.Error())
		return exitError
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "error", err.Error())
		return exitError
	}
	return exitOK
}

func parse(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fl := flag.NewFlagSet("hello", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&cfg.dir, "dir", "/www", "directory to serve")
	fl.StringVar(&cfg.addr, "addr", ":8080", "address to listen on")
	fl.BoolVar(&cfg.initPage, "init-page", true, `write index.html ("Hello, world!", mode 0600) if it is missing`)
	fl.BoolVar(&cfg.allowRoot, "allow-root", false, "run even as root (uid 0)")
	fl.DurationVar(&cfg.grace, "shutdown-timeout", 5*time.Second, "how long to let requests finish on SIGTERM")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: hello [flags]\n\nServes a directory over HTTP, with /healthz.\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return cfg, err
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "hello: unexpected arguments: %q\n", fl.Args())
		fl.Usage()
		return cfg, errors.New("unexpected arguments")
	}
	return cfg, nil
}

// initPage writes dir/index.html with Page and mode 0600 unless it exists.
// It reports whether it wrote the page. An existing page is never changed:
// what is there (tampered or not) is what the integrity monitor must see.
func initPage(dir string) (bool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	p := filepath.Join(dir, "index.html")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, pageMode)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := f.WriteString(Page); err != nil {
		f.Close()
		return false, err
	}
	// The umask may have narrowed the mode; 0600 is the seed's, set it exactly.
	if err := f.Chmod(pageMode); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}

func handler(root *os.Root) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("/", http.FileServerFS(root.FS()))
	return mux
}
