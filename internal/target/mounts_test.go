package target

import (
	"slices"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	// A container's mountinfo as the kubelet and runc leave it, with a
	// volume whose name needs the kernel's escapes.
	in := strings.Join([]string{
		`1265 1151 0:81 / / rw,relatime master:312 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w`,
		`1266 1265 0:84 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw`,
		`1267 1265 0:85 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755`,
		`1270 1265 8:1 /var/lib/kubelet/pods/u/etc-hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw`,
		`1271 1265 0:60 / /var/run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw`,
		`1272 1265 8:1 /v /srv/my\040data\134x rw,relatime - ext4 /dev/sda1 rw`,
		`1273 1266 0:84 /bus /proc/bus ro,relatime - proc proc rw`,
		`1274 1265 0:81 / / rw,relatime - overlay overlay rw`,
		``,
	}, "\n")
	got, err := parseMountinfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/", "/dev", "/etc/hosts", "/proc", "/proc/bus", `/srv/my data\x`, "/var/run/secrets/kubernetes.io/serviceaccount"}
	if !slices.Equal(got, want) {
		t.Fatalf("mount points\n got %q\nwant %q", got, want)
	}
	anc := MountAncestors(got)
	wantAnc := []string{"/", "/etc", "/proc", "/srv", "/var", "/var/run", "/var/run/secrets", "/var/run/secrets/kubernetes.io"}
	if !slices.Equal(anc, wantAnc) {
		t.Fatalf("ancestors\n got %q\nwant %q", anc, wantAnc)
	}
	if a := MountAncestors([]string{"/"}); len(a) != 0 {
		t.Errorf("ancestors of / alone: %q, want none", a)
	}
}

func TestParseMountinfoRejects(t *testing.T) {
	for name, in := range map[string]string{
		"short line":   "1 2 3:4 /",
		"bad escape":   `1 2 3:4 / /a\04 rw - x x rw`,
		"not octal":    `1 2 3:4 / /a\09x rw - x x rw`,
		"relative":     `1 2 3:4 / a rw - x x rw`,
		"escape > 255": `1 2 3:4 / /a\777 rw - x x rw`,
	} {
		if _, err := parseMountinfo([]byte(in)); err == nil {
			t.Errorf("%s: %q parsed without an error", name, in)
		}
	}
}
