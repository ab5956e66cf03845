package sidecar

import (
	"os"
	"path/filepath"
	"testing"
)

// The cgroup's memory limit is found for cgroup v1 and v2, at the
// process's cgroup path or at the mount's root; "no limit" is none.
func TestCgroupMemoryLimit(t *testing.T) {
	write := func(t *testing.T, root, rel, v string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, cgroup, file, value string
		want                      int64
	}{
		{"v2", "0::/kubepods/pod1/c1\n", "kubepods/pod1/c1/memory.max", "134217728", 128 << 20},
		{"v2 max", "0::/kubepods/pod1/c1\n", "kubepods/pod1/c1/memory.max", "max", 0},
		{"v2 namespaced", "0::/\n", "memory.max", "67108864", 64 << 20},
		{"v1", "12:cpu,cpuacct:/x\n11:memory:/kubepods/pod1/c1\n", "memory/kubepods/pod1/c1/memory.limit_in_bytes", "134217728", 128 << 20},
		{"v1 root of the mount", "11:memory:/host/path/c1\n", "memory/memory.limit_in_bytes", "134217728", 128 << 20},
		{"v1 no limit", "11:memory:/\n", "memory/memory.limit_in_bytes", "9223372036854771712", 0},
		{"none", "11:memory:/\n", "other", "1", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tc.file, tc.value)
			got, ok := cgroupMemoryLimit([]byte(tc.cgroup), root)
			if got != tc.want || ok != (tc.want > 0) {
				t.Errorf("limit %d, %v; want %d", got, ok, tc.want)
			}
		})
	}
	if got := memoryLimit(128 << 20); got != 96<<20 {
		t.Errorf("Go limit for 128 MiB: %d, want 96 MiB", got)
	}
}
