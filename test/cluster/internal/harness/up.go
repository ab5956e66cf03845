package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// serviceIP is the first address of the service range: the ClusterIP of
// the "kubernetes" Service. No kube-proxy runs, so nothing routes to it;
// pods set KUBERNETES_SERVICE_HOST=127.0.0.1 instead.
const (
	serviceCIDR = "10.0.0.0/24"
	serviceIP   = "10.0.0.1"
)

// Ports on 127.0.0.1 besides the apiserver's and etcd's.
const (
	kubeletPort        = 10250
	kubeletHealthzPort = 10248
	kcmPort            = 10257
	schedulerPort      = 10259
)

// System paths the kubelet or containerd create whatever their flags say;
// down removes those that did not exist before up.
var systemPaths = []string{
	"/var/lib/kubelet",
	"/var/log/pods",
	"/var/log/containers",
	"/run/containerd",
	"/usr/libexec/kubernetes",
	"/etc/kubernetes",
	"/var/run/kubernetes",
	"/opt/containerd",
}

// Up builds (unless told not to), then starts the cluster and waits until
// it can run pods.
func (c *Config) Up(ctx context.Context, build bool) (err error) {
	t0 := time.Now()
	if build {
		if err := c.Build(ctx); err != nil {
			return err
		}
	} else if err := c.ensurePackages(ctx); err != nil {
		return err
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "pause", "registry"} {
		if _, err := os.Stat(c.bin(b)); err != nil {
			return fmt.Errorf("%s is not built; run `cluster build`", c.bin(b))
		}
	}
	var up []string
	for _, n := range daemonNames {
		if c.running(n) != 0 {
			up = append(up, n)
		}
	}
	quiet := *c
	quiet.Out = io.Discard
	if len(up) == len(daemonNames) && quiet.Status(ctx) == nil {
		c.logf("already up")
		return nil
	}
	if _, err := os.Stat(c.Dir); err == nil {
		c.logf("cleaning up what a previous run left in %s", c.Dir)
		if err := c.down(false); err != nil {
			return fmt.Errorf("clean up the previous run: %w", err)
		}
	}
	if err := ensureHosts("/etc/hosts", c.Node); err != nil {
		return err
	}
	if err := c.checkPorts(); err != nil {
		return err
	}
	os.RemoveAll(c.failedLogs())
	for _, d := range []string{"", "run", "logs", "etcd", "kubelet", "manifests", "pod-logs", "cni", "containerd", "registry"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := c.recordSystemPaths(); err != nil {
		return err
	}

	started := map[string]*daemon{}
	defer func() {
		if err == nil {
			return
		}
		fmt.Fprintf(c.Err, "cluster: up failed after %s: %v\n", since(t0), err)
		c.dumpLogs()
		c.logf("stopping what was started")
		if derr := c.down(true); derr != nil {
			c.logf("down: %v", derr)
		}
	}()
	run := func(d *daemon) error {
		if err := c.start(d); err != nil {
			return err
		}
		started[d.name] = d
		return nil
	}

	p, err := c.writePKI()
	if err != nil {
		return err
	}
	for _, k := range []struct{ file, cert, user string }{
		{"admin.kubeconfig", "admin", "admin"},
		{"controller-manager.kubeconfig", "controller-manager", "system:kube-controller-manager"},
		{"scheduler.kubeconfig", "scheduler", "system:kube-scheduler"},
		{"kubelet.kubeconfig", "kubelet-client", "system:node:" + c.Node},
	} {
		if err := c.writeKubeconfig(p, c.path(k.file), k.cert, k.user); err != nil {
			return err
		}
	}

	// etcd
	t := time.Now()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", c.EtcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", c.EtcdPeerPort)
	etcd := &daemon{name: "etcd", bin: c.bin("etcd"), args: []string{
		"--name=podfim",
		"--data-dir=" + c.path("etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=podfim=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync=true", // a throw-away test cluster: speed over durability
		"--log-level=warn",
	}}
	if err := run(etcd); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "etcd", etcd, etcdURL+"/health", nil, 30*time.Second); err != nil {
		return err
	}
	c.logf("etcd ready in %s", since(t))

	// kube-apiserver
	t = time.Now()
	pk := p.file
	apiserver := &daemon{name: "kube-apiserver", bin: c.bin("kube-apiserver"), args: []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", c.APIPort),
		// The default reconciler rejects a loopback endpoint for the
		// kubernetes Service and makes shutdown slow.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + c.path("apiserver"),
		"--tls-cert-file=" + pk("apiserver.crt"),
		"--tls-private-key-file=" + pk("apiserver.key"),
		"--client-ca-file=" + pk("ca.crt"),
		"--kubelet-client-certificate=" + pk("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pk("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + pk("ca.crt"),
		// The node name resolves to 127.0.0.1 (/etc/hosts); its InternalIP
		// is the machine's own address, which tests must not send to.
		"--kubelet-preferred-address-types=Hostname",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pk("sa.pub"),
		"--service-account-signing-key-file=" + pk("sa.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}}
	if err := run(apiserver); err != nil {
		return err
	}
	a, err := c.api()
	if err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "kube-apiserver", apiserver, a.base+"/readyz", a.client, 90*time.Second); err != nil {
		return err
	}
	c.logf("kube-apiserver ready in %s", since(t))

	// kube-controller-manager and kube-scheduler
	kcmConf, schedConf := c.path("controller-manager.kubeconfig"), c.path("scheduler.kubeconfig")
	if err := run(&daemon{name: "kube-controller-manager", bin: c.bin("kube-controller-manager"), args: []string{
		"--kubeconfig=" + kcmConf,
		"--authentication-kubeconfig=" + kcmConf,
		"--authorization-kubeconfig=" + kcmConf,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", kcmPort),
		"--cert-dir=" + c.path("controller-manager"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + pk("sa.key"),
		"--root-ca-file=" + pk("ca.crt"),
		"--cluster-signing-cert-file=" + pk("ca.crt"),
		"--cluster-signing-key-file=" + pk("ca.key"),
		"--cluster-name=podfim",
		"--flex-volume-plugin-dir=" + c.path("controller-manager", "volume-plugins"),
		"--profiling=false",
	}}); err != nil {
		return err
	}
	if err := run(&daemon{name: "kube-scheduler", bin: c.bin("kube-scheduler"), args: []string{
		"--kubeconfig=" + schedConf,
		"--authentication-kubeconfig=" + schedConf,
		"--authorization-kubeconfig=" + schedConf,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", schedulerPort),
		"--cert-dir=" + c.path("scheduler"),
		"--leader-elect=false",
		"--profiling=false",
	}}); err != nil {
		return err
	}

	// the registry, before containerd, which pulls from it
	t = time.Now()
	if err := c.startRegistry(ctx, run); err != nil {
		return err
	}
	c.logf("registry ready at http://%s, busybox pushed, in %s", RegistryHost(), since(t))

	// containerd
	t = time.Now()
	runc, err := exec.LookPath("runc")
	if err != nil {
		runc = "/usr/sbin/runc"
	}
	if err := os.WriteFile(c.path("containerd", "config.toml"), []byte(c.containerdConfig(runc)), 0o644); err != nil {
		return err
	}
	if err := c.writeCNI(); err != nil {
		return err
	}
	if err := c.writeRegistryHosts(); err != nil {
		return err
	}
	containerd := &daemon{name: "containerd", bin: "/usr/bin/containerd", args: []string{"--config", c.path("containerd", "config.toml")}}
	if err := run(containerd); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd", containerd, 30*time.Second, func() (bool, string) {
		out, err := c.ctr(ctx, "version")
		return err == nil, strings.TrimSpace(out)
	}); err != nil {
		return err
	}
	if err := c.Import(ctx, c.image("pause"), c.image("busybox")); err != nil {
		return err
	}
	c.logf("containerd ready, images imported in %s", since(t))

	// kubelet
	t = time.Now()
	if err := os.WriteFile(c.path("kubelet.yaml"), []byte(c.kubeletConfig()), 0o644); err != nil {
		return err
	}
	if err := c.saveSysctls(); err != nil {
		return err
	}
	kubelet := &daemon{name: "kubelet", bin: c.bin("kubelet"), args: []string{
		"--config=" + c.path("kubelet.yaml"),
		"--kubeconfig=" + c.path("kubelet.kubeconfig"),
		"--hostname-override=" + c.Node,
		"--root-dir=" + c.path("kubelet"),
		"--cert-dir=" + c.path("kubelet", "pki"),
		"--v=1",
	}}
	if err := run(kubelet); err != nil {
		return err
	}
	var why string
	if err := c.waitFor(ctx, "node "+c.Node+" Ready", kubelet, 120*time.Second, func() (bool, string) {
		ok, reason, err := a.nodeReady(ctx, c.Node)
		if err != nil {
			return false, err.Error()
		}
		why = reason
		return ok, reason
	}); err != nil {
		return fmt.Errorf("%w (last: %s)", err, why)
	}
	c.logf("node %s Ready in %s", c.Node, since(t))
	if err := c.waitFor(ctx, "the default ServiceAccount", started["kube-controller-manager"], 60*time.Second, func() (bool, string) {
		code, err := a.get(ctx, "/api/v1/namespaces/default/serviceaccounts/default", nil)
		return err == nil && code == http.StatusOK, fmt.Sprintf("HTTP %d %v", code, err)
	}); err != nil {
		return err
	}
	var env strings.Builder
	c.Env(&env)
	if err := os.WriteFile(c.path("env"), []byte(env.String()), 0o644); err != nil {
		return err
	}
	c.logf("up in %s: export KUBECONFIG=%s (or: eval \"$(%s env)\")", since(t0), c.Kubeconfig(), selfName())
	return nil
}

func selfName() string {
	if exe, err := os.Executable(); err == nil {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
				return "./" + rel
			}
		}
		return exe
	}
	return "cluster"
}

// waitFor polls check until it is true, d exits, or timeout.
func (c *Config) waitFor(ctx context.Context, what string, d *daemon, timeout time.Duration, check func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := check()
		if ok {
			return nil
		}
		if msg != "" {
			last = msg
		}
		if d != nil && d.exited != nil {
			select {
			case <-d.exited:
				return fmt.Errorf("waiting for %s: %s exited: %v", what, d.name, d.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: timed out after %s (last: %s)", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Config) waitHTTP(ctx context.Context, what string, d *daemon, url string, client *http.Client, timeout time.Duration) error {
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	return c.waitFor(ctx, what, d, timeout, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// ctr runs Debian's ctr against the cluster's containerd.
func (c *Config) ctr(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/ctr", append([]string{"--address", c.containerdSock()}, args...)...)
	cmd.Env = baseEnv(c)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Import loads image tarballs into containerd's k8s.io namespace, where
// the kubelet finds them; pods use them with imagePullPolicy: Never.
func (c *Config) Import(ctx context.Context, files ...string) error {
	if _, err := os.Stat(c.containerdSock()); err != nil {
		return errors.New("the cluster's containerd is not running; run `cluster up`")
	}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return err
		}
		out, err := c.ctr(ctx, "-n", "k8s.io", "images", "import", abs)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(l, "unpacking ") {
				c.logf("imported %s", strings.TrimPrefix(l, "unpacking "))
			}
		}
	}
	return nil
}

// ensureHosts maps node to 127.0.0.1 in the hosts file, adding a line
// once; the apiserver reaches the kubelet by that name.
func ensureHosts(path, node string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		f := strings.Fields(l)
		for _, name := range f[min(1, len(f)):] {
			if name != node {
				continue
			}
			if f[0] == "127.0.0.1" {
				return nil
			}
			return fmt.Errorf("%s maps %s to %s; the node name must resolve to 127.0.0.1", path, node, f[0])
		}
	}
	line := "127.0.0.1 " + node + " # podfim test/cluster\n"
	if len(b) > 0 && b[len(b)-1] != '\n' {
		line = "\n" + line
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkPorts fails early, with a clear message, when a port is taken.
func (c *Config) checkPorts() error {
	for _, p := range []int{c.APIPort, c.EtcdPort, c.EtcdPeerPort, kubeletPort, kubeletHealthzPort, kcmPort, schedulerPort, RegistryPort} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return fmt.Errorf("port 127.0.0.1:%d is in use (another cluster up?): %w", p, err)
		}
		l.Close()
	}
	return nil
}

// recordSystemPaths notes which of systemPaths do not exist yet.
func (c *Config) recordSystemPaths() error {
	var missing []string
	for _, p := range systemPaths {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			missing = append(missing, p)
		}
	}
	return os.WriteFile(c.path("created-system-paths"), []byte(strings.Join(missing, "\n")+"\n"), 0o644)
}

func (c *Config) dumpLogs() {
	for _, n := range daemonNames {
		if t := c.tail(n, 25); t != "" {
			fmt.Fprintf(c.Err, "----- last lines of %s -----\n%s\n", c.logfile(n), t)
		}
	}
}

func (c *Config) containerdConfig(runc string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # Without it, runc fails to give containers a lower oom_score_adj than
  # containerd's own (no CAP_SYS_RESOURCE here).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[6]q
        Root = %[7]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[10]q
    conf_dir = %[8]q
    max_conf_num = 1
  # One directory per registry host, each with a hosts.toml: the cluster's
  # registry is plain HTTP on loopback (writeRegistryHosts).
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[9]q
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSock(), c.containerdSock()+".ttrpc",
		PauseImage, runc, c.path("containerd", "runc"), c.path("cni"), c.path("containerd", "certs.d"), c.path("cni", "bin"))
}

func (c *Config) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %[1]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[3]q
authorization:
  mode: Webhook
tlsCertFile: %[4]q
tlsPrivateKeyFile: %[5]q
rotateCertificates: false
serverTLSBootstrap: false
containerRuntimeEndpoint: %[6]q
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE: the kubelet cannot lower its own oom_score_adj.
oomScoreAdj: 0
staticPodPath: %[7]q
podLogsDir: %[8]q
volumePluginDir: %[9]q
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
# Never evict or garbage-collect images because another job filled the disk.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
  imagefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# No KUBE-FIREWALL and canary chains in the machine's iptables.
makeIPTablesUtilChains: false
`, kubeletPort, kubeletHealthzPort, c.path("pki", "ca.crt"), c.path("pki", "kubelet.crt"), c.path("pki", "kubelet.key"),
		"unix://"+c.containerdSock(), c.path("manifests"), c.path("pod-logs"), c.path("kubelet", "volume-plugins"))
}
