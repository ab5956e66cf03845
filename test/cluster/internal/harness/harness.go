// Package harness owns the local single-node Kubernetes of test/cluster:
// building its binaries and images, its PKI and configuration, starting
// and stopping its processes, and cleaning up after them.
package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Version is the Kubernetes release the cluster is built from (go.mod).
const Version = "v1.34.4"

// Images built by `cluster build` and imported by `cluster up`.
const (
	PauseImage   = "localhost/podfim/pause:cluster"
	BusyboxImage = "localhost/podfim/busybox:cluster"
)

// Config says where everything lives. Paths are absolute.
type Config struct {
	Dir   string // the running cluster: PKI, configs, data, logs, pidfiles
	Cache string // built binaries (bin/) and image tarballs (images/), kept across runs
	Src   string // the test/cluster module
	Node  string // node name; /etc/hosts maps it to 127.0.0.1

	APIPort      int
	EtcdPort     int
	EtcdPeerPort int

	Out, Err io.Writer
}

func defaultConfig(stdout, stderr io.Writer) Config {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/root"
		}
		cache = filepath.Join(home, ".cache")
	}
	c := Config{
		Dir:          envOr("PODFIM_CLUSTER_DIR", "/tmp/podfim-cluster"),
		Cache:        envOr("PODFIM_CLUSTER_CACHE", filepath.Join(cache, "podfim-cluster")),
		Src:          os.Getenv("PODFIM_CLUSTER_SRC"),
		Node:         envOr("PODFIM_CLUSTER_NODE", "podfim-node"),
		APIPort:      6443,
		EtcdPort:     2379,
		EtcdPeerPort: 2380,
		Out:          stdout,
		Err:          stderr,
	}
	return c
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

const usage = `usage: cluster [flags] COMMAND [ARGS]

Commands:
  build            install missing Debian packages, build the binaries and images (cached)
  up               build, then start etcd, the control plane, the registry (127.0.0.1:5000,
                   busybox pushed), containerd and the kubelet;
                   wait for the node to be Ready and the default ServiceAccount to exist
  down             stop everything up started and remove its mounts, cgroups and files
  status           show the processes and the node; exit 1 unless all is up
  env              print shell exports for tests: eval "$(cluster env)"
  import FILE...   import image tarballs (docker-archive or OCI) into the cluster's containerd
  smoke            up, go test ./smoke (a two-container pod: exec, kill -9, restart; a pod
                   pulled from the registry), down

Environment: PODFIM_CLUSTER_DIR (default /tmp/podfim-cluster), PODFIM_CLUSTER_CACHE
(default ~/.cache/podfim-cluster), PODFIM_CLUSTER_NODE (default podfim-node),
PODFIM_CLUSTER_SRC (the test/cluster module; found from the working directory).

Flags:
`

// Main runs one command and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	c := defaultConfig(stdout, stderr)
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Dir, "dir", c.Dir, "cluster directory")
	fs.StringVar(&c.Cache, "cache", c.Cache, "cache directory for binaries and images")
	fs.StringVar(&c.Src, "src", c.Src, "the test/cluster module directory")
	fs.StringVar(&c.Node, "node", c.Node, "node name")
	noBuild := fs.Bool("no-build", false, "up: use the cached binaries and images as they are")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	for _, p := range []*string{&c.Dir, &c.Cache} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			fmt.Fprintln(stderr, "cluster:", err)
			return 2
		}
		*p = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "build":
		err = c.Build(ctx)
	case "up":
		err = c.Up(ctx, !*noBuild)
	case "down":
		err = c.Down()
	case "status":
		err = c.Status(ctx)
	case "env":
		err = c.Env(stdout)
	case "import":
		if len(rest) == 0 {
			err = errors.New("import: name at least one image tarball")
			break
		}
		err = c.Import(ctx, rest...)
	case "smoke":
		err = c.Smoke(ctx)
	default:
		fmt.Fprintf(stderr, "cluster: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "cluster %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func (c *Config) logf(format string, args ...any) {
	fmt.Fprintf(c.Err, "cluster: "+format+"\n", args...)
}

// Paths inside Dir and Cache.
func (c *Config) bin(name string) string   { return filepath.Join(c.Cache, "bin", name) }
func (c *Config) image(name string) string { return filepath.Join(c.Cache, "images", name+".tar") }
func (c *Config) path(p ...string) string  { return filepath.Join(append([]string{c.Dir}, p...)...) }
func (c *Config) Kubeconfig() string       { return c.path("admin.kubeconfig") }
func (c *Config) containerdSock() string   { return c.path("containerd", "containerd.sock") }

// findSrc locates the test/cluster module: -src, or the working directory
// or one of its parents, or test/cluster below one of them.
func (c *Config) findSrc() (string, error) {
	if c.Src != "" {
		return filepath.Abs(c.Src)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		for _, cand := range []string{d, filepath.Join(d, "test", "cluster")} {
			b, err := os.ReadFile(filepath.Join(cand, "go.mod"))
			if err == nil && strings.Contains(string(b), "module github.com/podfim/podfim/test/cluster\n") {
				return cand, nil
			}
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("cannot find the test/cluster module from %s; pass -src", wd)
		}
	}
}

// Env prints the exports a test needs to talk to the cluster.
func (c *Config) Env(w io.Writer) error {
	fmt.Fprintf(w, "export KUBECONFIG=%s\n", shq(c.Kubeconfig()))
	fmt.Fprintf(w, "export KUBECTL=%s\n", shq(c.bin("kubectl")))
	fmt.Fprintf(w, "export PATH=%s:\"$PATH\"\n", shq(filepath.Join(c.Cache, "bin")))
	fmt.Fprintf(w, "export PODFIM_CLUSTER_DIR=%s\n", shq(c.Dir))
	fmt.Fprintf(w, "export PODFIM_CLUSTER_NODE=%s\n", shq(c.Node))
	fmt.Fprintf(w, "export PODFIM_CLUSTER_PAUSE_IMAGE=%s\n", shq(PauseImage))
	fmt.Fprintf(w, "export PODFIM_CLUSTER_BUSYBOX_IMAGE=%s\n", shq(BusyboxImage))
	// The registry (plain HTTP, referrers API) and busybox in it, by digest.
	fmt.Fprintf(w, "export PODFIM_CLUSTER_REGISTRY=%s\n", shq(RegistryHost()))
	fmt.Fprintf(w, "export PODFIM_CLUSTER_REGISTRY_BUSYBOX_IMAGE=%s\n", shq(c.RegistryBusyboxImage()))
	// ctr reads these, so `ctr images ls` talks to the cluster's containerd.
	fmt.Fprintf(w, "export CONTAINERD_ADDRESS=%s\n", shq(c.containerdSock()))
	fmt.Fprintf(w, "export CONTAINERD_NAMESPACE=k8s.io\n")
	return nil
}

func shq(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r == '=' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }
