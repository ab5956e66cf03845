package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The cluster's registry: test/registry (go-containerregistry's
// pkg/registry with the referrers API) on 127.0.0.1, plain HTTP.
// containerd pulls from it through a hosts.toml, so a pod can name an
// image by registry digest and the kubelet reports that digest as imageID.
const (
	RegistryPort = 5000
	// RegistryBusyboxRepo is where `up` pushes the busybox image.
	RegistryBusyboxRepo = "podfim/busybox"
)

// RegistryHost is the registry's host:port, as image names use it.
func RegistryHost() string { return fmt.Sprintf("127.0.0.1:%d", RegistryPort) }

// buildRegistry builds test/registry, which lives in the product module
// (two directories above test/cluster): that module already requires
// go-containerregistry, and test/cluster's must not change.
func (c *Config) buildRegistry(ctx context.Context, goBin, src string) error {
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", c.bin("registry"), "./test/registry")
	cmd.Dir = filepath.Join(src, "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = c.Err, c.Err
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./test/registry: %w", err)
	}
	return nil
}

// RegistryState is where the registry keeps its blobs and manifests
// (test/registry -state): beside the cluster's directory, not in it, so
// that `down` (which removes that directory) and `up` keep what was pushed.
// Remove it by hand to empty the registry.
func (c *Config) RegistryState() string { return filepath.Clean(c.Dir) + "-registry" }

// startRegistry starts the registry, waits for it, and pushes the busybox
// image to it; the digest goes to the cluster dir for `env`.
func (c *Config) startRegistry(ctx context.Context, run func(*daemon) error) error {
	d := &daemon{name: "registry", bin: c.bin("registry"), args: []string{
		"-addr=" + RegistryHost(),
		"-state=" + c.RegistryState(),
	}}
	if err := run(d); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "registry", d, "http://"+RegistryHost()+"/v2/", nil, 30*time.Second); err != nil {
		return err
	}
	digest, err := pushArchive(ctx, c.image("busybox"), RegistryHost(), RegistryBusyboxRepo, "cluster")
	if err != nil {
		return fmt.Errorf("push busybox to the registry: %w", err)
	}
	return os.WriteFile(c.path("registry", "busybox.digest"), []byte(digest+"\n"), 0o644)
}

// RegistryBusyboxImage is the busybox image in the registry, by digest;
// "" when the cluster is not up.
func (c *Config) RegistryBusyboxImage() string {
	b, err := os.ReadFile(c.path("registry", "busybox.digest"))
	if err != nil {
		return ""
	}
	return RegistryHost() + "/" + RegistryBusyboxRepo + "@" + strings.TrimSpace(string(b))
}

// writeRegistryHosts writes containerd's hosts.toml for the registry:
// plain HTTP, pull and resolve. The CRI plugin reads the directory given
// as its registry config_path.
func (c *Config) writeRegistryHosts() error {
	dir := c.path("containerd", "certs.d", RegistryHost())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	url := "http://" + RegistryHost()
	hosts := fmt.Sprintf("# podfim test/cluster: the local registry, plain HTTP on loopback.\nserver = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", url, url)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644)
}

// pushArchive pushes the one-image docker archive at path (as
// dockerArchive writes it: one uncompressed layer) to host/repo:tag as an
// OCI image, and returns its manifest digest.
func pushArchive(ctx context.Context, path, host, repo, tag string) (string, error) {
	files, err := readTar(path)
	if err != nil {
		return "", err
	}
	var m []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 || len(m[0].Layers) != 1 {
		return "", fmt.Errorf("%s: not a one-image, one-layer docker archive", path)
	}
	config, layer := files[m[0].Config], files[m[0].Layers[0]]
	base := "http://" + host + "/v2/" + repo
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layer)},
	}
	for _, blob := range [][]byte{config, layer} {
		if err := put(ctx, http.MethodPost, base+"/blobs/uploads/?digest="+digestOf(blob), "application/octet-stream", blob); err != nil {
			return "", err
		}
	}
	raw, err := json.Marshal(manifest)
	if err != nil {
		return "", err
	}
	if err := put(ctx, http.MethodPut, base+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", raw); err != nil {
		return "", err
	}
	return digestOf(raw), nil
}

func descriptor(mediaType string, blob []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digestOf(blob), "size": len(blob)}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func put(ctx context.Context, method, url, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// readTar returns the regular files of a (small, trusted: our own) tar.
func readTar(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				return nil, err
			}
		}
	}
}
