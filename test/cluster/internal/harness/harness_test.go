package harness

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDockerArchive(t *testing.T) {
	files := []imageFile{
		{Name: "bin", Mode: 0o755, Dir: true},
		{Name: "bin/busybox", Mode: 0o755, Data: []byte("not really busybox")},
		{Name: "bin/sh", Mode: 0o777, Link: "busybox"},
	}
	a, err := dockerArchive("localhost/x/y:z", files, nil, []string{"/bin/sh"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := dockerArchive("localhost/x/y:z", files, nil, []string{"/bin/sh"})
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same files differ")
	}

	entries := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		entries[h.Name] = data
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || !reflect.DeepEqual(manifest[0].RepoTags, []string{"localhost/x/y:z"}) || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest.json: %+v", manifest)
	}
	var config struct {
		Architecture, OS string
		Config           struct{ Cmd []string }
		RootFS           struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	cfg := entries[manifest[0].Config]
	if err := json.Unmarshal(cfg, &config); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(cfg); manifest[0].Config != hex.EncodeToString(sum[:])+".json" {
		t.Errorf("config %s is not named by its digest", manifest[0].Config)
	}
	layer := entries[manifest[0].Layers[0]]
	sum := sha256.Sum256(layer)
	if want := []string{"sha256:" + hex.EncodeToString(sum[:])}; !reflect.DeepEqual(config.RootFS.DiffIDs, want) {
		t.Errorf("diff_ids %v, want %v", config.RootFS.DiffIDs, want)
	}
	if config.OS != "linux" || !reflect.DeepEqual(config.Config.Cmd, []string{"/bin/sh"}) {
		t.Errorf("config: %+v", config)
	}
	var names []string
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name+"|"+h.Linkname)
	}
	if want := []string{"bin/|", "bin/busybox|", "bin/sh|busybox"}; !reflect.DeepEqual(names, want) {
		t.Errorf("layer: %q, want %q", names, want)
	}
}

func TestEnsureHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(path, []byte("127.0.0.1 localhost\n::1 localhost ip6-localhost"), 0o644)
	for range 2 {
		if err := ensureHosts(path, "node-a"); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	if want := "127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.0.1 node-a # podfim test/cluster\n"; string(b) != want {
		t.Fatalf("hosts:\n%s\nwant:\n%s", b, want)
	}
	// Already mapped on a line of its own: nothing to add.
	if err := ensureHosts(path, "localhost"); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Fatal("hosts changed for a name already mapped")
	}
	os.WriteFile(path, []byte("10.1.2.3 node-b\n# 127.0.0.1 node-b\n"), 0o644)
	if err := ensureHosts(path, "node-b"); err == nil || !strings.Contains(err.Error(), "10.1.2.3") {
		t.Fatalf("a name mapped elsewhere: err %v", err)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a`:           "/tmp/a",
		`/tmp/with\040sp`:  "/tmp/with sp",
		`/tmp/tab\011x\\y`: "/tmp/tab\tx\\\\y",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvPairs(t *testing.T) {
	var b strings.Builder
	c := Config{Dir: "/tmp/x y", Cache: "/c", Node: "n"}
	c.Env(&b)
	got := envPairs(b.String())
	for _, want := range []string{"KUBECONFIG=/tmp/x y/admin.kubeconfig", "KUBECTL=/c/bin/kubectl", "CONTAINERD_ADDRESS=/tmp/x y/containerd/containerd.sock", "PODFIM_CLUSTER_NODE=n"} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("env %q lacks %q", got, want)
		}
	}
	for _, g := range got {
		if strings.HasPrefix(g, "PATH=") {
			t.Errorf("env has %q", g)
		}
	}
}
