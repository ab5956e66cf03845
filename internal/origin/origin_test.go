package origin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// kubeMountinfo is a container's mountinfo as the kubelet and runc leave
// it, with an emptyDir at /scratch and a volume whose name needs the
// kernel's escapes.
var kubeMountinfo = strings.Join([]string{
	`1265 1151 0:81 / / rw,relatime master:312 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w`,
	`1266 1265 0:84 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw`,
	`1267 1265 0:85 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755`,
	`1268 1267 8:1 /var/lib/kubelet/pods/u/containers/app/1 /dev/termination-log rw - ext4 /dev/sda1 rw`,
	`1269 1265 8:1 /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/scratch /scratch rw - ext4 /dev/sda1 rw`,
	`1270 1265 8:1 /var/lib/kubelet/pods/u/etc-hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw`,
	`1271 1265 0:60 / /var/run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw`,
	`1272 1265 8:1 /v /srv/my\040data\134x rw,relatime - ext4 /dev/sda1 rw`,
	`1273 1266 0:84 /bus /proc/bus ro,relatime - proc proc rw`,
	`1274 1265 0:81 / / rw,relatime - overlay overlay rw`,
	"1275 1265 0:81 / /odd\vname\u00a0x rw,relatime - overlay overlay rw",
	``,
}, "\n")

func TestParseMountinfo(t *testing.T) {
	m, err := ParseMountinfo([]byte(kubeMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/dev", "/dev/termination-log", "/etc/hosts", "/odd\vname\u00a0x", "/proc", "/proc/bus", "/scratch", `/srv/my data\x`, "/var/run/secrets/kubernetes.io/serviceaccount"}
	if got := m.Points(); !slices.Equal(got, want) {
		t.Fatalf("mount points\n got %q\nwant %q", got, want)
	}
	wantAnc := []string{"/", "/dev", "/etc", "/proc", "/srv", "/var", "/var/run", "/var/run/secrets", "/var/run/secrets/kubernetes.io"}
	if anc := m.Ancestors(); !slices.Equal(anc, wantAnc) {
		t.Fatalf("ancestors\n got %q\nwant %q", anc, wantAnc)
	}
	for p, want := range map[string]string{
		"/scratch":             "/scratch",
		"/scratch/a/b":         "/scratch",
		"/scratchpad":          "",
		"/proc/bus/pci":        "/proc/bus",
		"/etc/hosts":           "/etc/hosts",
		"/etc/passwd":          "",
		"/":                    "",
		`/srv/my data\x/f`:     `/srv/my data\x`,
		"/var/run/secrets/x/y": "",
	} {
		got, ok := m.Under(p)
		if got != want || ok != (want != "") {
			t.Errorf("Under(%q) = %q, %v; want %q", p, got, ok, want)
		}
	}
	if a := NewMounts([]string{"/"}).Ancestors(); len(a) != 0 {
		t.Errorf("ancestors of / alone: %q, want none", a)
	}
	var none *Mounts
	if _, ok := none.Under("/x"); ok || none.IsPoint("/x") || none.Ancestors() != nil {
		t.Error("a nil table has mount points")
	}
}

func TestParseMountinfoRejects(t *testing.T) {
	for name, in := range map[string]string{
		"short line":   "1 2 3:4 /",
		"bad escape":   `1 2 3:4 / /a\04 rw - x x rw`,
		"not octal":    `1 2 3:4 / /a\09x rw - x x rw`,
		"relative":     `1 2 3:4 / a rw - x x rw`,
		"escape > 255": `1 2 3:4 / /a\777 rw - x x rw`,
		"tab splits":   "1 2 3:4 /\t/a rw - x x rw",
	} {
		if _, err := ParseMountinfo([]byte(in)); err == nil {
			t.Errorf("%s: %q parsed without an error", name, in)
		}
	}
}

// TestMountinfoBounds: a table over either bound is refused whole, with
// ErrTooLarge, never cut.
func TestMountinfoBounds(t *testing.T) {
	var b strings.Builder
	for i := range MaxMounts {
		fmt.Fprintf(&b, "%d 1 0:1 / /m%d rw - tmpfs tmpfs rw\n", i, i)
	}
	if m, err := ParseMountinfo([]byte(b.String())); err != nil || len(m.Points()) != MaxMounts {
		t.Fatalf("%d mount points: %v", MaxMounts, err)
	}
	b.WriteString("9 1 0:1 / /one-more rw - tmpfs tmpfs rw\n")
	if _, err := ParseMountinfo([]byte(b.String())); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d mount points: %v, want ErrTooLarge", MaxMounts+1, err)
	}
	big := strings.Repeat("1 1 0:1 / /same rw - tmpfs tmpfs rw\n", MaxMountinfoBytes/30)
	if _, err := ReadMountinfo(strings.NewReader(big)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d bytes: %v, want ErrTooLarge", len(big), err)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte(kubeMountinfo))
	f.Add([]byte(`1 2 3:4 / /a\134\040b rw - x x rw`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMountinfo(b)
		if err != nil {
			return
		}
		for _, p := range m.Points() {
			if !strings.HasPrefix(p, "/") || p == "/" || !m.IsPoint(p) {
				t.Fatalf("mount point %q", p)
			}
			if got, ok := m.Under(p + "/x"); !ok || !strings.HasPrefix(p+"/x", got) {
				t.Fatalf("Under(%q/x) = %q, %v", p, got, ok)
			}
		}
	})
}

func TestClassify(t *testing.T) {
	mounts, err := ParseMountinfo([]byte(kubeMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	layers := []string{"sha256:base", "sha256:app"}
	img := New(true, layers, mounts)
	tree := New(false, nil, mounts)
	plain := New(true, layers, nil)
	inImage := &attr.Entry{Path: "/www/index.html", Layer: 2}
	implied := &attr.Entry{Path: "/www", Layer: 0}
	changedAll := []string{"mode", "size", "mtime", "ctime", "sha256"}
	times := []string{"size", "mtime", "ctime"}
	for _, tc := range []struct {
		name  string
		c     *Classifier
		p     string
		k     attr.Change
		old   *attr.Entry
		attrs []string
		want  Origin
		keep  []string // nil with ok false: the runtime's
	}{
		{"tamper of an image file", img, "/www/index.html", attr.Changed, inImage, changedAll, Origin{Kind: Image, Layer: 2, LayerDigest: "sha256:app"}, changedAll},
		{"image file removed", img, "/www/index.html", attr.Removed, inImage, nil, Origin{Kind: Image, Layer: 2, LayerDigest: "sha256:app"}, nil},
		{"directory no layer lists", img, "/www", attr.Changed, implied, []string{"mode"}, Origin{Kind: Image}, []string{"mode"}},
		{"dropped file", img, "/www/new.html", attr.Added, nil, nil, Origin{Kind: Container}, nil},
		{"written to a volume", img, "/scratch/x", attr.Added, nil, nil, Origin{Kind: Volume, Mount: "/scratch"}, nil},
		{"image file a volume hides", img, "/scratch/old", attr.Removed, &attr.Entry{Layer: 1}, nil, Origin{Kind: Volume, Mount: "/scratch"}, nil},
		{"tree baseline path", tree, "/www/index.html", attr.Changed, inImage, changedAll, Origin{Kind: Baseline}, changedAll},
		{"tree: new file", tree, "/www/new.html", attr.Added, nil, nil, Origin{Kind: Container}, nil},
		{"no mount table: /etc/hosts is a file", plain, "/etc/hosts", attr.Added, nil, nil, Origin{Kind: Container}, nil},
	} {
		o, keep, ok := tc.c.Classify(tc.p, tc.k, tc.old, tc.attrs)
		if o != tc.want || !ok || !slices.Equal(keep, tc.keep) {
			t.Errorf("%s: Classify(%q) = %+v, %q, %v; want %+v, %q, true", tc.name, tc.p, o, keep, ok, tc.want, tc.keep)
		}
	}
	// The runtime's additions: never findings against an image baseline.
	for _, tc := range []struct {
		name  string
		c     *Classifier
		p     string
		k     attr.Change
		old   *attr.Entry
		attrs []string
	}{
		{"bind-mounted /etc/hosts the image lacks", img, "/etc/hosts", attr.Added, nil, nil},
		{"bind-mounted /etc/hosts over the image's", img, "/etc/hosts", attr.Changed, &attr.Entry{Layer: 1}, changedAll},
		{"emptyDir over an image directory", img, "/scratch", attr.Changed, &attr.Entry{Layer: 1}, []string{"mode", "uid"}},
		{"token directories the runtime created", img, "/var/run/secrets", attr.Added, nil, nil},
		{"directory above a mount point copied up", img, "/etc", attr.Changed, &attr.Entry{Layer: 1}, times},
		{"root copied up", img, "/", attr.Changed, &attr.Entry{Layer: 1}, times},
		{"first sight: new mount, new times", tree, "/scratch", attr.Changed, &attr.Entry{}, []string{"inode", "mtime", "ctime"}},
	} {
		if o, keep, ok := tc.c.Classify(tc.p, tc.k, tc.old, tc.attrs); ok {
			t.Errorf("%s: Classify(%q) = %+v, %q, kept; want the runtime's", tc.name, tc.p, o, keep)
		}
	}
	// Above a mount point, what the runtime does not change is reported.
	o, keep, ok := img.Classify("/etc", attr.Changed, &attr.Entry{Layer: 1}, []string{"mode", "mtime"})
	if !ok || !slices.Equal(keep, []string{"mode"}) || o.Kind != Image {
		t.Errorf("/etc mode and mtime changed: %+v, %q, %v; want image, [mode], kept", o, keep, ok)
	}
	// A first-sight baseline of a bind-mounted file: its content is watched.
	o, keep, ok = tree.Classify("/etc/hosts", attr.Changed, &attr.Entry{}, changedAll)
	if !ok || !slices.Equal(keep, []string{"mode", "sha256"}) || o != (Origin{Kind: Volume, Mount: "/etc/hosts"}) {
		t.Errorf("first sight, /etc/hosts rewritten: %+v, %q, %v; want volume /etc/hosts, [mode sha256], kept", o, keep, ok)
	}
	var none *Classifier
	if o, keep, ok := none.Classify("/x", attr.Added, nil, []string{"a"}); o != (Origin{}) || !ok || len(keep) != 1 {
		t.Errorf("nil classifier: %+v, %q, %v", o, keep, ok)
	}
}
