//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/cli"
)

// TestPodmanImageBaseline makes a baseline from a multi-layer image
// (whiteouts, an opaque directory, hard links within and across layers,
// xattrs, a symlink, a FIFO, a device) and checks it against the image as
// podman unpacked it: clean, then exactly the findings of a tamper. podman
// does the unpacking, never podfim: a check against podfim's own unpacking
// would prove nothing.
func TestPodmanImageBaseline(t *testing.T) {
	p := newPodman(t)
	work := t.TempDir()
	archive := filepath.Join(work, "image.tar")
	ref := "localhost/" + uniqueName("podfim-e2e-image") + ":v1"
	writeTestImage(t, archive, ref)
	p.must(2*time.Minute, "load", "-i", archive)
	t.Cleanup(func() { p.run(time.Minute, "rmi", "-f", ref) })

	base := filepath.Join(work, "image.pfb")
	podfim(t, 0, "baseline", "--image", "docker-archive:"+archive, "--out", base)

	// The same image gives the same baseline, byte for byte.
	again := filepath.Join(work, "again.pfb")
	podfim(t, 0, "baseline", "--image", "docker-archive:"+archive, "--out", again)
	if a, b := readFile(t, base), readFile(t, again); !bytes.Equal(a, b) {
		t.Fatal("two baselines of the same image differ")
	}

	t.Run("ImageMountIsClean", func(t *testing.T) {
		p := p.in(t)
		mnt := strings.TrimSpace(p.must(time.Minute, "image", "mount", ref))
		t.Cleanup(func() { p.run(time.Minute, "image", "unmount", ref) })
		rep := check(t, mnt, base, 0)
		t.Logf("%s: %d entries, clean", mnt, rep.Summary.BaselineEntries)
		for _, p := range []string{"data/alias", "keep/tool-link", "opq/old", "www/gone.html"} {
			_, err := os.Lstat(filepath.Join(mnt, p))
			t.Logf("%s: %v", p, err)
		}
		if rep.Summary.BaselineEntries < 20 || rep.Summary.BaselineEntries != rep.Summary.ScannedEntries {
			t.Fatalf("baseline %d entries, scanned %d", rep.Summary.BaselineEntries, rep.Summary.ScannedEntries)
		}
	})

	t.Run("OCIArchiveFromPodmanSave", func(t *testing.T) {
		p := p.in(t)
		// podman's own export of what it stored is another image (its
		// layers are regenerated): its baseline must check clean too.
		oci := filepath.Join(work, "saved.tar")
		p.must(2*time.Minute, "save", "--format", "oci-archive", "-o", oci, ref)
		saved := filepath.Join(work, "saved.pfb")
		podfim(t, 0, "baseline", "--image", "oci-archive:"+oci, "--out", saved)
		mnt := strings.TrimSpace(p.must(time.Minute, "image", "mount", ref))
		t.Cleanup(func() { p.run(time.Minute, "image", "unmount", ref) })
		check(t, mnt, saved, 0)
	})

	t.Run("TamperedContainerIsFound", func(t *testing.T) {
		p := p.in(t)
		ctr := uniqueName("podfim-e2e-image-ctr")
		p.must(time.Minute, "create", "--name", ctr, ref, "/bin/app")
		t.Cleanup(func() { p.run(time.Minute, "rm", "-f", ctr) })
		root := strings.TrimSpace(p.must(time.Minute, "mount", ctr))
		check(t, root, base, 0)
		// Write through the container's writable layer, as an attacker
		// in it would.
		must(t, os.WriteFile(filepath.Join(root, "www/index.html"), []byte("Hacked\n"), 0o644))
		must(t, os.Chmod(filepath.Join(root, "etc/app.conf"), 0o666))
		must(t, os.Remove(filepath.Join(root, "www/about.html")))
		must(t, os.WriteFile(filepath.Join(root, "bin/dropper"), []byte("#!/bin/sh\n"), 0o755))
		must(t, unix.Lremovexattr(filepath.Join(root, "etc/app.conf"), "user.origin"))
		must(t, unix.Lremovexattr(filepath.Join(root, "etc/acl.conf"), "system.posix_acl_access"))
		must(t, os.Chown(filepath.Join(root, "data/secret"), 0, 0))
		rep := check(t, root, base, cli.ExitAdded|cli.ExitRemoved|cli.ExitChanged)
		got := map[string]string{}
		for _, f := range rep.Findings {
			got[f.Path] = f.Kind + " " + strings.Join(f.Attributes, ",")
		}
		want := map[string]string{
			"/www/index.html": "changed size,mtime,sha256",
			"/etc/app.conf":   "changed mode,xattrs",
			"/data/secret":    "changed uid,gid",
			"/etc/acl.conf":   "changed acl",
			"/www/about.html": "removed ",
			"/bin/dropper":    "added ",
			// The directories whose entries changed.
			"/www": "changed mtime",
			"/bin": "changed mtime",
		}
		if !mapsEqual(got, want) {
			t.Fatalf("findings:\n got %q\nwant %q", got, want)
		}
	})
}

// report is the part of `podfim check --format json` the test reads.
type report struct {
	Findings []struct {
		Path       string   `json:"path"`
		Kind       string   `json:"kind"`
		Attributes []string `json:"attributes"`
	} `json:"findings"`
	Summary struct {
		BaselineEntries int `json:"baseline_entries"`
		ScannedEntries  int `json:"scanned_entries"`
	} `json:"summary"`
}

// check runs podfim check and wants exit status code.
func check(t *testing.T, root, base string, code int) report {
	t.Helper()
	out := podfim(t, code, "check", "--root", root, "--baseline", base, "--format", "json")
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check output: %v\n%s", err, out)
	}
	return r
}

// podfim runs podfim in-process and wants exit status code.
func podfim(t *testing.T, code int, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if got := cli.Run(context.Background(), args, &out, &errOut); got != code {
		t.Fatalf("podfim %s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), got, code, out.String(), errOut.String())
	}
	return out.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	pax              map[string]string
	major, minor     int64
}

// writeTestImage writes a three-layer image FROM scratch as a
// docker-archive tagged ref.
func writeTestImage(t *testing.T, path, ref string) {
	t.Helper()
	caps := string([]byte{0, 0, 0, 2, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // cap_net_bind_service
	// user::rw- user:1000:rw- group::r-- mask::rw- other::r--
	fullACL := acl([4]uint32{0x01, 6, 0}, [4]uint32{0x02, 6, 1000}, [4]uint32{0x04, 4, 0}, [4]uint32{0x10, 6, 0}, [4]uint32{0x20, 4, 0})
	d := func(n string, mode int64) tarEntry { return tarEntry{name: n, typ: tar.TypeDir, mode: mode} }
	f := func(n, body string, mode int64) tarEntry { return tarEntry{name: n, body: body, mode: mode} }
	layers := [][]tarEntry{{
		d("bin/", 0o755), d("etc/", 0o755), d("www/", 0o755), d("data/", 0o750), d("opq/", 0o755), d("lib/", 0o755),
		{name: "bin/app", body: "\x7fELF app", mode: 0o755, pax: map[string]string{"SCHILY.xattr.security.capability": caps}},
		{name: "bin/app-link", typ: tar.TypeLink, link: "bin/app", mode: 0o755, pax: map[string]string{"SCHILY.xattr.security.capability": caps}},
		{name: "etc/app.conf", body: "listen 8080\n", mode: 0o644, pax: map[string]string{"SCHILY.xattr.user.origin": "layer1"}},
		f("www/index.html", "Hello, world!\n", 0o644), f("www/about.html", "About\n", 0o644), f("www/gone.html", "Gone\n", 0o644),
		{name: "data/secret", body: "s3cret", mode: 0o600, uid: 1000, gid: 1000},
		{name: "data/pipe", typ: tar.TypeFifo, mode: 0o600},
		{name: "lib/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "www/home", typ: tar.TypeSymlink, link: "index.html", mode: 0o644}, // a symlink is 0777 anyway
		// POSIX ACLs: one as a real file system writes it (its
		// permissions are the mode's), one whose mask the mode
		// contradicts (runtimes disagree: not recorded), and one that is
		// only the mode (the kernel stores none).
		{name: "etc/acl.conf", body: "acl", mode: 0o664, pax: map[string]string{"SCHILY.xattr.system.posix_acl_access": fullACL}},
		{name: "etc/odd-acl.conf", body: "odd", mode: 0o640, pax: map[string]string{"SCHILY.xattr.system.posix_acl_access": fullACL}},
		{name: "etc/minimal.conf", body: "m", mode: 0o644, pax: map[string]string{"SCHILY.xattr.system.posix_acl_access": acl(
			[4]uint32{0x01, 6, 0}, [4]uint32{0x04, 4, 0}, [4]uint32{0x20, 4, 0})}},
		f("opq/old", "old", 0o644), d("opq/sub/", 0o755), f("opq/sub/deep", "deep", 0o644),
		f("bin/tool", "tool v1", 0o755),
		f("data/orig", "linked", 0o644), {name: "data/alias", typ: tar.TypeLink, link: "data/orig", mode: 0o644},
	}, {
		d("www/", 0o755), f("www/.wh.gone.html", "", 0o644),
		d("opq/", 0o755), f("opq/.wh..wh..opq", "", 0o644), f("opq/new", "new", 0o644),
		d("etc/", 0o755), {name: "etc/app.conf", body: "listen 8081\n", mode: 0o644, pax: map[string]string{"SCHILY.xattr.user.origin": "layer2"}},
		d("srv/", 0o755), f("srv/name with spaces", "x", 0o644),
		d("data/", 0o750), f("data/.wh.orig", "", 0o644), // its hard link stays
	}, {
		// A hard link to a file of a lower layer is left out: podman 4.3
		// cannot load such a layer (containerd can; the unit tests cover it).
		d("keep/", 0o755), f("keep/tool-v1", "tool v1", 0o755), {name: "keep/tool-link", typ: tar.TypeLink, link: "keep/tool-v1", mode: 0o755},
		d("bin/", 0o755), f("bin/tool", "tool v2", 0o755),
		// Parents the layer does not list: the runtime makes them.
		f("srv/implied/file", "i", 0o644), f("data/later", "l", 0o600),
	}}
	writeImage(t, path, ref, layers)
}

// writeImage writes layers as a linux/amd64 image FROM scratch to a
// docker-archive tagged ref; layer i's entries have the time 1700000000+i h.
func writeImage(t *testing.T, path, ref string, layers [][]tarEntry) {
	t.Helper()
	img := empty.Image
	for i, entries := range layers {
		data := tarLayer(t, entries, time.Unix(1_700_000_000+int64(i)*3600, 123456789))
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		must(t, err)
		img, err = mutate.AppendLayers(img, l)
		must(t, err)
	}
	cf, err := img.ConfigFile()
	must(t, err)
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/bin/app"}
	img, err = mutate.ConfigFile(img, cf)
	must(t, err)
	tag, err := name.NewTag(ref)
	must(t, err)
	must(t, tarball.WriteToFile(path, tag, img))
}

// acl encodes a POSIX ACL xattr: tag, permissions, id per entry.
func acl(entries ...[4]uint32) string {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return string(b)
}

// tarLayer returns a PAX tar of entries, every time mtime.
func tarLayer(t *testing.T, entries []tarEntry, mtime time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime, PAXRecords: e.pax, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		must(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(e.body))
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}
