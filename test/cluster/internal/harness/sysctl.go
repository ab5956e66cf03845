package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The kernel settings the kubelet sets at start (protectKernelDefaults
// false; true would make it refuse to start instead). Among them
// kernel.panic_on_oops=1: not something to leave on a shared machine.
var kubeletSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

func (c *Config) sysctlFile() string { return c.path("sysctl-before-kubelet") }

// saveSysctls records the settings before the first kubelet start.
func (c *Config) saveSysctls() error {
	if _, err := os.Stat(c.sysctlFile()); err == nil {
		return nil
	}
	var b strings.Builder
	for _, k := range kubeletSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s\n", k, strings.TrimSpace(string(v)))
	}
	return os.WriteFile(c.sysctlFile(), []byte(b.String()), 0o644)
}

// restoreSysctls puts back what saveSysctls recorded.
func (c *Config) restoreSysctls() error {
	b, err := os.ReadFile(c.sysctlFile())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(l, " ")
		if !ok || strings.Contains(k, "..") {
			continue
		}
		p := filepath.Join("/proc/sys", k)
		if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
