// Command podfim-cni is the test cluster's CNI plugin: it gives a pod that
// is not hostNetwork a network namespace with nothing outside it. The
// namespace gets `lo` up and an interface named CNI_IFNAME (eth0) with a
// /32 address from a documentation range (203.0.113.0/24, RFC 5737) and no
// route, so containerd's CRI has a pod IP to report and nothing a pod sends
// can leave its namespace: the machine allows traffic only on loopback.
//
// The interface is a bridge without ports, not a dummy: the test machine's
// kernel has no dummy driver, and a port-less bridge behaves the same (its
// address is local, there is nothing to forward to). Addresses are leased
// by creating DATADIR/<ip> with O_EXCL, holding the container ID; DEL
// removes the lease, so a busy node reuses addresses.
//
// It speaks the CNI spec 0.3.0-0.4.0 (ADD, DEL, CHECK, VERSION) as
// containerd 1.6's CRI calls it: network config on stdin, CNI_* variables,
// the result or an error object on stdout. It runs iproute2's ip inside the
// namespace through nsenter (util-linux), both by absolute path: a CNI
// plugin gets no PATH it can rely on.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	cniVersion = "0.4.0"
	ipBin      = "/bin/ip"
	nsenterBin = "/usr/bin/nsenter"
	// maxLeases bounds the addresses of one subnet the plugin hands out.
	maxLeases = 1024
)

var supported = []string{"0.3.0", "0.3.1", "0.4.0"}

// netConf is the plugin's part of the network configuration.
type netConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	// Subnet the /32 addresses come from, e.g. 203.0.113.0/24.
	Subnet string `json:"subnet"`
	// DataDir holds one lease file per address in use.
	DataDir string `json:"dataDir"`
}

// args are the CNI_* variables of one call.
type args struct {
	command, containerID, netns, ifname string
}

// cniError is the spec's error object; its code says what failed.
type cniError struct {
	Version string `json:"cniVersion"`
	Code    int    `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details,omitempty"`
}

func (e *cniError) Error() string { return e.Msg }

// Error codes of the spec.
const (
	codeIncompatibleVersion = 1
	codeInvalidConfig       = 7
	codeTryLater            = 11
	codeInternal            = 999
)

func main() {
	a := args{
		command:     os.Getenv("CNI_COMMAND"),
		containerID: os.Getenv("CNI_CONTAINERID"),
		netns:       os.Getenv("CNI_NETNS"),
		ifname:      os.Getenv("CNI_IFNAME"),
	}
	if err := run(a, os.Stdin, os.Stdout); err != nil {
		var ce *cniError
		if !errors.As(err, &ce) {
			ce = &cniError{Code: codeInternal, Msg: err.Error()}
		}
		ce.Version = cniVersion
		json.NewEncoder(os.Stdout).Encode(ce)
		os.Exit(1)
	}
}

func run(a args, stdin io.Reader, stdout io.Writer) error {
	if a.command == "VERSION" {
		return json.NewEncoder(stdout).Encode(map[string]any{"cniVersion": cniVersion, "supportedVersions": supported})
	}
	raw, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		return err
	}
	var conf netConf
	if err := json.Unmarshal(raw, &conf); err != nil {
		return &cniError{Code: codeInvalidConfig, Msg: "failed to parse the network configuration: " + err.Error()}
	}
	subnet, err := conf.check()
	if err != nil {
		return err
	}
	switch a.command {
	case "ADD":
		if a.containerID == "" || a.netns == "" || a.ifname == "" {
			return &cniError{Code: codeInvalidConfig, Msg: "ADD needs CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME"}
		}
		res, err := add(conf, subnet, a)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(res)
	case "DEL":
		return del(conf, a)
	case "CHECK":
		return check(a)
	}
	return &cniError{Code: codeInvalidConfig, Msg: fmt.Sprintf("unknown CNI_COMMAND %q", a.command)}
}

func (c netConf) check() (netip.Prefix, error) {
	if c.CNIVersion != "" && !contains(supported, c.CNIVersion) {
		return netip.Prefix{}, &cniError{Code: codeIncompatibleVersion, Msg: fmt.Sprintf("cniVersion %q is not one of %s", c.CNIVersion, strings.Join(supported, ", "))}
	}
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 || p.Masked() != p {
		return netip.Prefix{}, &cniError{Code: codeInvalidConfig, Msg: fmt.Sprintf("subnet %q is not an IPv4 network of at least 4 addresses", c.Subnet)}
	}
	if !filepath.IsAbs(c.DataDir) {
		return netip.Prefix{}, &cniError{Code: codeInvalidConfig, Msg: fmt.Sprintf("dataDir %q is not an absolute path", c.DataDir)}
	}
	return p, nil
}

// result is a CNI 0.3/0.4 result: one interface in the sandbox and its
// address. containerd's CRI takes the pod IP from the address of the
// interface named CNI_IFNAME.
type result struct {
	CNIVersion string         `json:"cniVersion"`
	Interfaces []resultIface  `json:"interfaces"`
	IPs        []resultIP     `json:"ips"`
	DNS        map[string]any `json:"dns"`
}

type resultIface struct {
	Name    string `json:"name"`
	Mac     string `json:"mac,omitempty"`
	Sandbox string `json:"sandbox"`
}

type resultIP struct {
	Version   string `json:"version"`
	Address   string `json:"address"`
	Interface int    `json:"interface"`
}

func add(conf netConf, subnet netip.Prefix, a args) (*result, error) {
	ip, err := lease(conf.DataDir, subnet, a.containerID)
	if err != nil {
		return nil, err
	}
	addr := netip.PrefixFrom(ip, 32).String()
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", a.ifname, "type", "bridge"},
		{"addr", "add", addr, "dev", a.ifname},
		{"link", "set", a.ifname, "up"},
	}
	if err := inNetns(a.netns, steps[0]...); err != nil {
		release(conf.DataDir, a.containerID)
		return nil, err
	}
	// A retried ADD finds the interface there: start from a clean one.
	inNetns(a.netns, "link", "del", a.ifname)
	for _, s := range steps[1:] {
		if err := inNetns(a.netns, s...); err != nil {
			release(conf.DataDir, a.containerID)
			return nil, err
		}
	}
	version := conf.CNIVersion
	if version == "" {
		version = cniVersion
	}
	return &result{
		CNIVersion: version,
		Interfaces: []resultIface{{Name: a.ifname, Sandbox: a.netns}},
		IPs:        []resultIP{{Version: "4", Address: addr, Interface: 0}},
		DNS:        map[string]any{},
	}, nil
}

// del releases the address; the interface goes with the namespace. The
// spec asks DEL to succeed when things are already gone.
func del(conf netConf, a args) error {
	if a.netns != "" {
		if _, err := os.Stat(a.netns); err == nil {
			inNetns(a.netns, "link", "del", a.ifname)
		}
	}
	return release(conf.DataDir, a.containerID)
}

func check(a args) error {
	if err := inNetns(a.netns, "addr", "show", "dev", a.ifname); err != nil {
		return err
	}
	return nil
}

func inNetns(netns string, ipArgs ...string) error {
	cmd := exec.Command(nsenterBin, append([]string{"--net=" + netns, "--", ipBin}, ipArgs...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s in %s: %w: %s", strings.Join(ipArgs, " "), netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lease returns the address held for containerID, or takes the first free
// one of subnet (network and broadcast addresses excluded).
func lease(dir string, subnet netip.Prefix, containerID string) (netip.Addr, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return netip.Addr{}, err
	}
	if ip, ok := held(dir, containerID); ok {
		return ip, nil
	}
	ip := subnet.Addr().Next()
	for n := 0; n < maxLeases && subnet.Contains(ip.Next()); n, ip = n+1, ip.Next() {
		f, err := os.OpenFile(filepath.Join(dir, ip.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_, err = f.WriteString(containerID)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return ip, err
	}
	return netip.Addr{}, &cniError{Code: codeTryLater, Msg: fmt.Sprintf("no free address in %s (%s holds the leases)", subnet, dir)}
}

// held finds the lease of containerID.
func held(dir, containerID string) (netip.Addr, bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && string(b) == containerID {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func release(dir, containerID string) error {
	if ip, ok := held(dir, containerID); ok {
		if err := os.Remove(filepath.Join(dir, ip.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
