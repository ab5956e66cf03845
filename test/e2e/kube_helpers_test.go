//go:build e2e

package e2e

// Helpers for the tests against a real Kubernetes (the test cluster of
// test/cluster, docs/cluster.md). Name such tests TestKube*: `make e2e-kube`
// runs `go test -tags e2e -run Kube`.
//
//	k := newKube(t)                   // kubectl; skips without a cluster, fails in CI
//	ns := k.namespace(t, "podfim-b-") // a fresh namespace, deleted at the end
//	img := kubeImages(t, k)           // make images + import, once per process
//	k.apply(t, ns, helmTemplate(t, "demo", ns, "--set", "..."))
//	k.waitReady(t, ns, "app.kubernetes.io/component=demo", 2, time.Minute)
//
// Every wait that times out prints `kubectl describe`, the pods' logs and
// the namespace's events, so a failure in CI explains itself.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// kube runs kubectl against one cluster.
type kube struct {
	kubectl string
	env     []string // KUBECONFIG=..., and what `cluster env` exports
}

// clusterEnvFile is where `bin/cluster up` writes what `cluster env` prints.
const clusterEnvFile = "/tmp/podfim-cluster/env"

// newKube finds the cluster: $KUBECONFIG and $KUBECTL (eval "$(bin/cluster
// env)"), or else the test cluster's env file when it is up. Without a
// reachable cluster it fails when CI is set (the tier requires one) and
// skips otherwise.
func newKube(t testing.TB) *kube {
	t.Helper()
	noCluster := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("no cluster in CI: %s (make e2e-kube brings it up)", msg)
		}
		t.Skipf("no cluster: %s; run make cluster-up and eval \"$(bin/cluster env)\", or make e2e-kube", msg)
	}
	vars := map[string]string{
		"KUBECONFIG": os.Getenv("KUBECONFIG"),
		"KUBECTL":    os.Getenv("KUBECTL"),
	}
	if vars["KUBECONFIG"] == "" {
		file := clusterEnvFile
		if d := os.Getenv("PODFIM_CLUSTER_DIR"); d != "" {
			file = filepath.Join(d, "env")
		}
		parsed, err := readClusterEnv(file)
		if err != nil {
			noCluster("KUBECONFIG is not set and %v", err)
		}
		for k, v := range parsed {
			if k == "KUBECONFIG" || k == "KUBECTL" || vars[k] == "" {
				vars[k] = v
			}
		}
	}
	k := &kube{kubectl: vars["KUBECTL"]}
	if k.kubectl == "" {
		k.kubectl = "kubectl"
	}
	for name, v := range vars {
		if v != "" && name != "PATH" {
			k.env = append(k.env, name+"="+v)
		}
	}
	r := k.run(t, 20*time.Second, "version", "-o", "json")
	if r.Err != nil {
		noCluster("kubectl version (KUBECONFIG=%s): %v: %s", vars["KUBECONFIG"], r.Err, lastLines(r.Out(), 3))
	}
	return k
}

// readClusterEnv parses the `export NAME=VALUE` lines of `cluster env`.
func readClusterEnv(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("the test cluster is not up: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "export ")
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(value); err == nil {
			value = uq
		}
		out[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if out["KUBECONFIG"] == "" {
		return nil, fmt.Errorf("%s has no KUBECONFIG", file)
	}
	return out, nil
}

// run runs kubectl with args.
func (k *kube) run(t testing.TB, timeout time.Duration, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, timeout, k.env, "", k.kubectl, args...)
}

// must runs kubectl and fails the test on error; it returns stdout.
func (k *kube) must(t testing.TB, args ...string) string {
	t.Helper()
	r := k.run(t, 2*time.Minute, args...)
	if r.Err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), r.Err, r.Out())
	}
	return r.Stdout
}

// stdin runs kubectl with input and returns the result.
func (k *kube) stdin(t testing.TB, input string, args ...string) cmdResult {
	t.Helper()
	// Not under t.TempDir(): its name holds the test's, and kubectl splits
	// -f at commas.
	tmp, err := os.CreateTemp("", "podfim-e2e-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := tmp.Name()
	defer os.Remove(f)
	_, err = tmp.WriteString(input)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// kubectl reads the file itself (-f FILE): no pipe to manage.
	args = append(args, "-f", f)
	return k.run(t, 2*time.Minute, args...)
}

// apply applies manifests (YAML text) in namespace ns ("" for the
// manifests' own).
func (k *kube) apply(t testing.TB, ns, manifests string) string {
	t.Helper()
	args := []string{"apply"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	r := k.stdin(t, manifests, args...)
	if r.Err != nil {
		t.Fatalf("kubectl apply: %v\n%s\nmanifests:\n%s", r.Err, r.Out(), manifests)
	}
	return r.Stdout
}

// namespace creates a namespace named prefix plus a unique suffix and
// deletes it when the test ends, waiting for its pods to be gone. On
// failure it first shows what ran in it. PODFIM_E2E_NAMESPACE_PREFIX, when
// set, replaces the owner part of prefix ("podfim-c-" of
// "podfim-c-system-"): on a shared cluster each engineer's runs keep to
// their own prefix, as PODFIM_E2E_TAG keeps their images.
func (k *kube) namespace(t testing.TB, prefix string) string {
	t.Helper()
	prefix = namespacePrefix(prefix, os.Getenv("PODFIM_E2E_NAMESPACE_PREFIX"))
	name := uniqueName(strings.TrimSuffix(prefix, "-"))
	k.must(t, "create", "namespace", name)
	t.Cleanup(func() {
		if t.Failed() {
			k.dump(t, name)
		}
		r := k.run(t, 3*time.Minute, "delete", "namespace", name, "--wait=true", "--timeout=150s")
		if r.Err != nil {
			t.Errorf("kubectl delete namespace %s: %v\n%s", name, r.Err, r.Out())
		}
	})
	return name
}

// namespacePrefix returns prefix ("podfim-OWNER-REST") with owner (e.g.
// "podfim-r2-") in place of its "podfim-OWNER-" part; prefix when owner is
// empty.
func namespacePrefix(prefix, owner string) string {
	if owner == "" {
		return prefix
	}
	rest := ""
	if parts := strings.SplitN(prefix, "-", 3); len(parts) == 3 {
		rest = parts[2]
	}
	return strings.TrimSuffix(owner, "-") + "-" + rest
}

// dump logs what a failed test needs to see in ns: pods, their
// descriptions, every container's log (and the previous one after a
// restart) and the events.
func (k *kube) dump(t testing.TB, ns string) {
	t.Helper()
	t.Logf("kubectl -n %s get pods -o wide:\n%s", ns, k.run(t, 30*time.Second, "-n", ns, "get", "pods", "-o", "wide").Out())
	t.Logf("kubectl -n %s describe pods:\n%s", ns, k.run(t, 30*time.Second, "-n", ns, "describe", "pods").Out())
	pods := strings.Fields(k.run(t, 30*time.Second, "-n", ns, "get", "pods", "-o", "jsonpath={.items[*].metadata.name}").Stdout)
	for _, p := range pods {
		t.Logf("kubectl -n %s logs %s --all-containers --prefix:\n%s", ns, p,
			k.run(t, 30*time.Second, "-n", ns, "logs", p, "--all-containers", "--prefix", "--tail=200").Out())
		if prev := k.run(t, 30*time.Second, "-n", ns, "logs", p, "--all-containers", "--prefix", "--previous", "--tail=100"); prev.Err == nil {
			t.Logf("previous containers of %s:\n%s", p, prev.Out())
		}
	}
	t.Logf("kubectl -n %s get events:\n%s", ns, k.run(t, 30*time.Second, "-n", ns, "get", "events", "--sort-by=.lastTimestamp").Out())
}

// waitUntil polls check every interval until it returns true. After
// timeout it shows the namespace (dump) and fails with what the last check
// said. It returns how long it took.
func (k *kube) waitUntil(t testing.TB, ns, what string, timeout, interval time.Duration, check func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, last := check()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			k.dump(t, ns)
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(interval)
	}
}

// podState is what the waits look at: a pod's phase and its containers.
type podState struct {
	Name, Phase string
	Ready       int // containers ready
	Containers  int
	Restarts    map[string]int // by container name
}

// pods returns the pods of ns matching selector.
func (k *kube) pods(t testing.TB, ns, selector string) []podState {
	t.Helper()
	// One line per pod: name phase then name:ready:restarts per container.
	tmpl := `{range .items[*]}{.metadata.name} {.status.phase}{range .status.containerStatuses[*]} {.name}:{.ready}:{.restartCount}{end}{"\n"}{end}`
	out := k.must(t, "-n", ns, "get", "pods", "-l", selector, "-o", "jsonpath="+tmpl)
	var pods []podState
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		p := podState{Name: f[0], Phase: f[1], Restarts: map[string]int{}}
		for _, c := range f[2:] {
			parts := strings.Split(c, ":")
			if len(parts) != 3 {
				t.Fatalf("kubectl get pods: unexpected container status %q", c)
			}
			p.Containers++
			if parts[1] == "true" {
				p.Ready++
			}
			n, err := strconv.Atoi(parts[2])
			if err != nil {
				t.Fatalf("kubectl get pods: restart count %q: %v", parts[2], err)
			}
			p.Restarts[parts[0]] = n
		}
		pods = append(pods, p)
	}
	return pods
}

func (p podState) String() string {
	return fmt.Sprintf("%s %s %d/%d restarts %v", p.Name, p.Phase, p.Ready, p.Containers, p.Restarts)
}

// waitReady waits until exactly one pod matches selector and it is Running
// with want of want containers ready (2/2 for app + sidecar); it returns
// that pod.
func (k *kube) waitReady(t testing.TB, ns, selector string, want int, timeout time.Duration) podState {
	t.Helper()
	var got podState
	k.waitUntil(t, ns, fmt.Sprintf("one pod %s %d/%d Running", selector, want, want), timeout, 250*time.Millisecond, func() (bool, string) {
		pods := k.pods(t, ns, selector)
		if len(pods) != 1 {
			return false, fmt.Sprintf("%d pods: %v", len(pods), pods)
		}
		got = pods[0]
		return got.Phase == "Running" && got.Containers == want && got.Ready == want, got.String()
	})
	return got
}

// logs returns a container's log (the sidecar logs JSON on stderr; the
// kubelet keeps both streams).
func (k *kube) logs(t testing.TB, ns, pod, container string) string {
	t.Helper()
	return k.run(t, 30*time.Second, "-n", ns, "logs", pod, "-c", container).Out()
}

// kubeTag is the tag under which the tests import their images: each
// engineer uses their own (PODFIM_E2E_TAG), so an import never replaces an
// image another test is running.
func kubeTag() string {
	if tag := os.Getenv("PODFIM_E2E_TAG"); tag != "" {
		return tag
	}
	return "e2e"
}

// kubeImageRefs are the images of one test process, in the cluster.
type kubeImageRefs struct {
	Tag, Podfim, Hello string
}

var (
	kubeImagesOnce sync.Once
	kubeImagesErr  error
	kubeImagesRefs kubeImageRefs
)

// kubeImages builds podfim and hello with podman under kubeTag() (make
// images TAG=...) and imports them into the test cluster (bin/cluster
// import), once per test process.
func kubeImages(t testing.TB, k *kube) kubeImageRefs {
	t.Helper()
	kubeImagesOnce.Do(func() {
		kubeImagesRefs, kubeImagesErr = buildAndImport(t, kubeTag())
	})
	if kubeImagesErr != nil {
		t.Fatal(kubeImagesErr)
	}
	return kubeImagesRefs
}

func buildAndImport(t testing.TB, tag string) (kubeImageRefs, error) {
	requireRoot(t)
	aptInstall(t, map[string]func() bool{
		"podman":         onPath("podman"),
		"runc":           onPath("runc"),
		"busybox-static": staticBusybox,
	})
	root := repoRoot(t)
	env := []string{"CONTAINERS_CONF=" + filepath.Join(root, "build", "containers.conf"), "ENGINE=podman", "TAG=" + tag}
	refs := kubeImageRefs{Tag: tag, Podfim: "localhost/podfim:" + tag, Hello: "localhost/hello:" + tag}
	r := runCmd(t, 10*time.Minute, env, "", "make", "images")
	if r.Err != nil {
		return refs, fmt.Errorf("make images TAG=%s: %w\n%s", tag, r.Err, r.Out())
	}
	t.Logf("make images TAG=%s (%s)", tag, r.Took.Round(time.Millisecond))
	dir, err := os.MkdirTemp("", "podfim-e2e-images-")
	if err != nil {
		return refs, err
	}
	defer os.RemoveAll(dir)
	var archives []string
	for _, ref := range []string{refs.Podfim, refs.Hello} {
		a := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
		r := runCmd(t, 5*time.Minute, env, "", "podman", "--log-level=error", "save", "--format", "docker-archive", "-o", a, ref)
		if r.Err != nil {
			return refs, fmt.Errorf("podman save %s: %w\n%s", ref, r.Err, r.Out())
		}
		archives = append(archives, a)
	}
	cluster := filepath.Join(root, "bin", "cluster")
	if _, err := os.Stat(cluster); err != nil {
		return refs, fmt.Errorf("bin/cluster is missing (make cluster-harness): %w", err)
	}
	r = runCmd(t, 5*time.Minute, nil, "", cluster, append([]string{"import"}, archives...)...)
	if r.Err != nil {
		return refs, fmt.Errorf("bin/cluster import: %w\n%s", r.Err, r.Out())
	}
	t.Logf("imported %s and %s into the cluster (%s)", refs.Podfim, refs.Hello, r.Took.Round(time.Millisecond))
	return refs, nil
}

var (
	helmOnce sync.Once
	helmErr  error
)

// helmBin returns bin/helm, building it (make helm) once per process when
// it is missing.
func helmBin(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "helm")
	helmOnce.Do(func() {
		if _, err := os.Stat(bin); err == nil {
			return
		}
		r := runCmd(t, 15*time.Minute, nil, "", "make", "helm")
		if r.Err != nil {
			helmErr = fmt.Errorf("make helm: %w\n%s", r.Err, r.Out())
		}
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return bin
}

// helmChart is the repository's chart.
func helmChart(t testing.TB) string {
	return filepath.Join(repoRoot(t), "deploy", "helm", "podfim")
}

// helmRun runs bin/helm with args (the environment's KUBECONFIG, if any).
func helmRun(t testing.TB, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, 5*time.Minute, nil, "", helmBin(t), args...)
}

// helmTemplate renders the chart as release in namespace ns with extra
// args (--set, -f, ...) and fails the test when helm refuses.
func helmTemplate(t testing.TB, release, ns string, args ...string) string {
	t.Helper()
	full := append([]string{"template", release, helmChart(t), "--namespace", ns}, args...)
	r := helmRun(t, full...)
	if r.Err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(full, " "), r.Err, r.Out())
	}
	return r.Stdout
}

// kustomize renders a kustomization directory with kubectl's built-in
// kustomize.
func (k *kube) kustomize(t testing.TB, dir string) string {
	t.Helper()
	r := k.run(t, time.Minute, "kustomize", dir)
	if r.Err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, r.Err, r.Out())
	}
	return r.Stdout
}

// overlay writes a kustomization into a temporary directory and returns
// the directory, for kustomize. Each entry of resources and components is
// a path of the repository (e.g. "deploy/kubernetes/base"), made relative
// (kustomize refuses absolute ones); body adds the rest (namespace:,
// patches: ...); files are written next to it and may be listed in body.
func overlay(t testing.TB, resources, components []string, body string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(repoRoot(t), p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var b strings.Builder
	b.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
	for _, list := range []struct {
		key   string
		paths []string
	}{{"resources", resources}, {"components", components}} {
		if len(list.paths) == 0 {
			continue
		}
		b.WriteString(list.key + ":\n")
		for _, p := range list.paths {
			if strings.HasPrefix(p, "./") { // a file written here
				b.WriteString("- " + p + "\n")
				continue
			}
			b.WriteString("- " + rel(p) + "\n")
		}
	}
	b.WriteString(body)
	all := map[string]string{"kustomization.yaml": b.String()}
	for name, text := range files {
		all[name] = text
	}
	for name, text := range all {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// helm runs bin/helm against k's cluster (install, uninstall, ...).
func (k *kube) helm(t testing.TB, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, 5*time.Minute, k.env, "", helmBin(t), args...)
}

// TestKubeNamespacePrefix: PODFIM_E2E_NAMESPACE_PREFIX replaces the owner
// part of a test's namespace prefix and keeps the rest. No cluster needed.
func TestKubeNamespacePrefix(t *testing.T) {
	for _, c := range []struct{ prefix, owner, want string }{
		{"podfim-b-", "", "podfim-b-"},
		{"podfim-b-", "podfim-r2-", "podfim-r2-"},
		{"podfim-c-system-", "podfim-r2-", "podfim-r2-system-"},
		{"podfim-c-app-", "podfim-r2", "podfim-r2-app-"},
	} {
		if got := namespacePrefix(c.prefix, c.owner); got != c.want {
			t.Errorf("namespacePrefix(%q, %q) = %q, want %q", c.prefix, c.owner, got, c.want)
		}
	}
}
