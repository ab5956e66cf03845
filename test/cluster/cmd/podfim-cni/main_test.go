package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newNetns makes a named network namespace for the test, as the CRI makes
// one per pod sandbox, and returns its path.
func newNetns(t *testing.T, name string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: network namespaces need it")
		}
		t.Skip("needs root (ip netns)")
	}
	if out, err := exec.Command(ipBin, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command(ipBin, "netns", "del", name).Run() })
	return "/var/run/netns/" + name
}

func call(t *testing.T, a args, conf string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(a, strings.NewReader(conf), &out)
	return out.String(), err
}

func TestAddDel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "leases")
	conf := `{"cniVersion":"0.4.0","name":"podfim","type":"podfim-cni","subnet":"203.0.113.0/24","dataDir":"` + dir + `"}`
	ns1 := newNetns(t, "podfim-cni-test1")
	ns2 := newNetns(t, "podfim-cni-test2")

	out, err := call(t, args{command: "ADD", containerID: "c1", netns: ns1, ifname: "eth0"}, conf)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	var res result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("result %q: %v", out, err)
	}
	if len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Sandbox != ns1 ||
		len(res.IPs) != 1 || res.IPs[0].Address != "203.0.113.1/32" || res.IPs[0].Interface != 0 || res.CNIVersion != "0.4.0" {
		t.Fatalf("result %s: want eth0 in %s with 203.0.113.1/32", out, ns1)
	}
	show, err := exec.Command(ipBin, "-n", "podfim-cni-test1", "-4", "addr").CombinedOutput()
	if err != nil || !strings.Contains(string(show), "inet 203.0.113.1/32 scope global eth0") || !strings.Contains(string(show), "inet 127.0.0.1/8") {
		t.Fatalf("ip addr in the pod's namespace: %v\n%s", err, show)
	}
	// Nothing leaves the namespace: no route but the local ones.
	routes, _ := exec.Command(ipBin, "-n", "podfim-cni-test1", "-4", "route").CombinedOutput()
	if strings.TrimSpace(string(routes)) != "" {
		t.Fatalf("routes in the pod's namespace: %q, want none", routes)
	}
	if _, err := call(t, args{command: "CHECK", containerID: "c1", netns: ns1, ifname: "eth0"}, conf); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// A second pod gets the next address; a retried ADD keeps its own.
	out2, err := call(t, args{command: "ADD", containerID: "c2", netns: ns2, ifname: "eth0"}, conf)
	if err != nil || !strings.Contains(out2, `"203.0.113.2/32"`) {
		t.Fatalf("second ADD: %v %s", err, out2)
	}
	again, err := call(t, args{command: "ADD", containerID: "c1", netns: ns1, ifname: "eth0"}, conf)
	if err != nil || !strings.Contains(again, `"203.0.113.1/32"`) {
		t.Fatalf("retried ADD: %v %s", err, again)
	}

	// DEL frees the address (twice is fine, as the spec asks), and the
	// next pod reuses it.
	for range 2 {
		if _, err := call(t, args{command: "DEL", containerID: "c1", netns: ns1, ifname: "eth0"}, conf); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "203.0.113.1")); !os.IsNotExist(err) {
		t.Fatalf("lease after DEL: %v", err)
	}
	if _, err := call(t, args{command: "DEL", containerID: "c3", netns: "/nonexistent", ifname: "eth0"}, conf); err != nil {
		t.Fatalf("DEL of a namespace that is gone: %v", err)
	}
	ns3 := newNetns(t, "podfim-cni-test3")
	out3, err := call(t, args{command: "ADD", containerID: "c3", netns: ns3, ifname: "eth0"}, conf)
	if err != nil || !strings.Contains(out3, `"203.0.113.1/32"`) {
		t.Fatalf("ADD after DEL: %v %s", err, out3)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, conf, want string }{
		{"bad json", `{`, "failed to parse"},
		{"version", `{"cniVersion":"1.0.0","subnet":"203.0.113.0/24","dataDir":"` + dir + `"}`, "cniVersion"},
		{"subnet", `{"cniVersion":"0.4.0","subnet":"203.0.113.1/24","dataDir":"` + dir + `"}`, "subnet"},
		{"ipv6", `{"cniVersion":"0.4.0","subnet":"2001:db8::/64","dataDir":"` + dir + `"}`, "subnet"},
		{"dataDir", `{"cniVersion":"0.4.0","subnet":"203.0.113.0/24","dataDir":"rel"}`, "dataDir"},
	} {
		_, err := call(t, args{command: "ADD", containerID: "c", netns: "/x", ifname: "eth0"}, tc.conf)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.want)
		}
	}
	// A full subnet is an error, not a reuse.
	os.WriteFile(filepath.Join(dir, "203.0.113.1"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "203.0.113.2"), []byte("b"), 0o644)
	if _, err := lease(dir, mustPrefix(t, "203.0.113.0/30"), "c"); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("lease in a full subnet: %v", err)
	}
	out, err := call(t, args{command: "VERSION"}, "")
	if err != nil || !strings.Contains(out, `"supportedVersions":["0.3.0","0.3.1","0.4.0"]`) {
		t.Fatalf("VERSION: %v %s", err, out)
	}
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
