package sidecar

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// The sidecar's memory grows with the app's tree during a whole-tree check
// (the scan's records, about 90 bytes an entry, until its walk ends), and
// the Go runtime lets the heap reach 1.5x the live heap (GOGC=50) before it
// collects. Under a container memory limit that headroom is what turns a
// peak the sidecar could live with into an OOM kill: 300,000 files peaked
// at 150 MiB of RSS with a live heap of about 80 MiB. So the sidecar sets
// the Go runtime's soft memory limit from its cgroup's limit, unless
// GOMEMLIMIT says otherwise: near it, the runtime collects more often
// instead of growing (docs/sidecar.md, "Memory").

// memLimitShare is the part of the cgroup's limit given to the Go runtime:
// the rest is for what it does not count (the binary's mapped pages, the
// page cache charged to the cgroup).
const memLimitShare = 0.75

// cgroupMemoryLimit returns the memory limit of the cgroup of the process
// whose /proc/<pid>/cgroup is procCgroup, read under the cgroup mount
// root (/sys/fs/cgroup), and whether there is one. cgroup v2's memory.max
// and v1's memory.limit_in_bytes are read at the process's cgroup path,
// then at the mount's root (a container that sees its own cgroup there
// without a cgroup namespace).
func cgroupMemoryLimit(procCgroup []byte, root string) (int64, bool) {
	var files []string
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			files = append(files, filepath.Join(root, parts[2], "memory.max"), filepath.Join(root, "memory.max"))
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			files = append(files, filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"),
				filepath.Join(root, "memory", "memory.limit_in_bytes"))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(v, 10, 64)
		if v == "max" || err != nil || n <= 0 || n >= 1<<62 {
			// No limit here (v1 shows "no limit" as a page-rounded 2^63-1).
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// memoryLimit returns the soft memory limit the sidecar sets for a cgroup
// limit of limit bytes.
func memoryLimit(limit int64) int64 { return int64(float64(limit) * memLimitShare) }

// Log keys of the memory limit.
const (
	keyCgroupLimit = "cgroup_limit_bytes"
	keyGoLimit     = "go_limit_bytes"
)

// SetMemoryLimit sets the Go runtime's soft memory limit from the cgroup's
// memory limit, unless GOMEMLIMIT is set (the runtime read it) or there is
// no limit: Run does it for the sidecar, the node agent for itself.
func SetMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	pc, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return
	}
	l, ok := cgroupMemoryLimit(pc, "/sys/fs/cgroup")
	if !ok {
		return
	}
	debug.SetMemoryLimit(memoryLimit(l))
	log.Info("Go memory limit set from the cgroup's memory limit", keyCgroupLimit, l, keyGoLimit, memoryLimit(l))
}
