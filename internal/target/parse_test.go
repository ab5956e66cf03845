package target

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Container IDs for the cgroup vectors.
const (
	id1 = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"
	id2 = "abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152"
)

func TestContainerIDFromCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		// Kubernetes, cgroupfs driver (docker or containerd), cgroup v1.
		{"v1 kubepods cgroupfs", "12:memory:/kubepods/besteffort/pod3d2a1c5e-8f0b-4c1a-9e2d-7b6c5a4f3e21/" + id1 + "\n", id1},
		{"v1 kubepods burstable all lines",
			"12:pids:/kubepods/burstable/pod3d2a1c5e-8f0b-4c1a-9e2d-7b6c5a4f3e21/" + id1 + "\n" +
				"11:cpu,cpuacct:/kubepods/burstable/pod3d2a1c5e-8f0b-4c1a-9e2d-7b6c5a4f3e21/" + id1 + "\n" +
				"1:name=systemd:/kubepods/burstable/pod3d2a1c5e-8f0b-4c1a-9e2d-7b6c5a4f3e21/" + id1 + "\n" +
				"0::/\n", id1},
		// containerd's CRI plugin, systemd driver.
		{"v1 cri-containerd scope", "4:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod3d2a1c5e_8f0b_4c1a_9e2d_7b6c5a4f3e21.slice/cri-containerd-" + id1 + ".scope\n", id1},
		{"v2 cri-containerd scope", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3d2a1c5e_8f0b_4c1a_9e2d_7b6c5a4f3e21.slice/cri-containerd-" + id1 + ".scope\n", id1},
		// Seen from a sidecar in its own cgroup namespace: relative to it.
		{"v2 cgroup namespace", "0::/../cri-containerd-" + id2 + ".scope\n", id2},
		// runc's "slice:prefix:name" systemd path, as shown on some v1 hosts.
		{"v1 systemd slice:prefix:id", "1:name=systemd:/system.slice/containerd.service/kubepods-burstable-pod3d2a1c5e_8f0b_4c1a_9e2d_7b6c5a4f3e21.slice:cri-containerd:" + id1 + "\n", id1},
		// CRI-O.
		{"v2 crio scope", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-" + id2 + ".scope\n", id2},
		{"crio conmon is no container", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-conmon-" + id2 + ".scope\n", ""},
		// podman: systemd scope, cgroupfs, and a pod's container.
		{"podman systemd", "0::/machine.slice/libpod-" + id1 + ".scope\n", id1},
		{"podman systemd nested", "0::/machine.slice/libpod-" + id1 + ".scope/container\n", id1},
		{"podman cgroupfs", "4:memory:/libpod_parent/libpod-" + id1 + "\n", id1},
		{"podman cgroupfs pod", "4:memory:/libpod_parent/" + id2 + "/libpod-" + id1 + "\n", id1},
		{"podman conmon is no container", "0::/machine.slice/libpod-conmon-" + id1 + ".scope\n", ""},
		// Docker.
		{"docker cgroupfs", "4:memory:/docker/" + id2 + "\n", id2},
		{"docker systemd", "0::/system.slice/docker-" + id2 + ".scope\n", id2},
		{"docker in docker", "4:memory:/docker/" + id1 + "/docker/" + id2 + "\n", id2},
		{"docker v1 hybrid, id on some lines", "9:name=systemd:/\n8:pids:/\n4:memory:/docker/" + id2 + "\n0::/\n", id2},
		// No container.
		{"host session", "0::/user.slice/user-1000.slice/session-2.scope\n", ""},
		{"root", "0::/\n", ""},
		{"32 hex is no container", "4:memory:/process_api/cdeb6900a1e3bc96e38e763ef0f36bed\n", ""},
		{"upper case hex", "4:memory:/docker/" + strings.ToUpper(id2) + "\n", ""},
		{"65 hex", "4:memory:/docker/" + id2 + "0\n", ""},
		{"empty", "", ""},
		{"garbage", "no colons here\n::\n", ""},
		{"no trailing newline", "0::/system.slice/docker-" + id2 + ".scope", id2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := containerIDFromCgroup(tc.content); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzContainerIDFromCgroup(f *testing.F) {
	f.Add("0::/kubepods.slice/cri-containerd-" + id1 + ".scope\n")
	f.Add("4:memory:/libpod_parent/" + id2 + "/libpod-" + id1 + "\n")
	f.Add("1:name=systemd:/a.slice:cri-containerd:" + id1)
	f.Fuzz(func(t *testing.T, content string) {
		id := containerIDFromCgroup(content)
		if id != "" && (len(id) != 64 || !isHex(id) || !strings.Contains(content, id)) {
			t.Errorf("containerIDFromCgroup(%q) = %q", content, id)
		}
	})
}

// statLine is /proc/PID/stat with comm and flags in, start time 987654.
func statLine(comm, state, flags string) string {
	return "4242 (" + comm + ") " + state + " 1 4242 4242 0 -1 " + flags +
		" 120 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       stat
		kthread    bool
		dead       bool
	}{
		{"plain", statLine("sleep", "S", "4194560"), stat{State: 'S', Flags: 4194560, StartTime: 987654}, false, false},
		{"spaces and parentheses", statLine("(a) b)", "R", "4194560"), stat{State: 'R', Flags: 4194560, StartTime: 987654}, false, false},
		{"looks like fields", statLine("x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 (", "S", "4194560"), stat{State: 'S', Flags: 4194560, StartTime: 987654}, false, false},
		{"kernel thread", statLine("kworker/0:1-events", "I", "69238880"), stat{State: 'I', Flags: 69238880, StartTime: 987654}, true, false},
		{"zombie", statLine("app", "Z", "4227084"), stat{State: 'Z', Flags: 4227084, StartTime: 987654}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.line))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || got.kernelThread() != tc.kthread || got.dead() != tc.dead {
				t.Errorf("got %+v (kthread %v, dead %v), want %+v (%v, %v)", got, got.kernelThread(), got.dead(), tc.want, tc.kthread, tc.dead)
			}
		})
	}
	for _, bad := range []string{
		"",
		"4242 sleep S 1",
		"4242 (sleep) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0\n", // no field 22
		strings.Replace(statLine("sleep", "S", "4194560"), "987654", "-1", 1),
		strings.Replace(statLine("sleep", "S", "4194560"), "4194560", "x", 1),
	} {
		if st, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) = %+v, want an error", bad, st)
		}
	}

	// The real thing.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := parseStat(b); err != nil || st.StartTime == 0 || st.kernelThread() || st.dead() {
		t.Errorf("/proc/self/stat %q: %+v, %v", b, st, err)
	}
}

func TestParseNS(t *testing.T) {
	if ns, err := parseNS("mnt:[4026531841]", "mnt"); err != nil || ns != 4026531841 {
		t.Errorf("got %d, %v", ns, err)
	}
	for _, bad := range []string{"", "mnt:[]", "net:[4026531841]", "mnt:[4026531841", "mnt:[x]", "mnt:4026531841"} {
		if _, err := parseNS(bad, "mnt"); err == nil {
			t.Errorf("parseNS(%q) did not fail", bad)
		}
	}
}

func TestParseExe(t *testing.T) {
	for _, tc := range []struct {
		link, path string
		deleted    bool
	}{
		{"/app/server", "/app/server", false},
		{"/app/server (deleted)", "/app/server", true},
		{"/usr/bin/my (deleted) app", "/usr/bin/my (deleted) app", false},
	} {
		if p, d := parseExe(tc.link); p != tc.path || d != tc.deleted {
			t.Errorf("parseExe(%q) = %q, %v; want %q, %v", tc.link, p, d, tc.path, tc.deleted)
		}
	}
}

func TestParseLastPID(t *testing.T) {
	if n, err := parseLastPID([]byte("0.26 0.31 0.29 1/123 4567\n")); err != nil || n != 4567 {
		t.Errorf("parseLastPID = %d, %v; want 4567", n, err)
	}
	if _, err := parseLastPID([]byte("0.26 0.31\n")); err == nil {
		t.Error("a short loadavg parsed")
	}
}

func TestPIDCounterMoves(t *testing.T) {
	c, err := (&Finder{}).OpenPIDCounter()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.LastPID()
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	after, err := c.LastPID()
	if err != nil || after == before {
		t.Errorf("last pid %d -> %d (%v): starting a process must move it", before, after, err)
	}
}
