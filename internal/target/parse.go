package target

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// stat holds the fields of /proc/PID/stat that target uses.
type stat struct {
	State     byte   // field 3: R, S, D, Z, X...
	Flags     uint64 // field 9: PF_* flags
	StartTime uint64 // field 22
}

// pfKthread is PF_KTHREAD from include/linux/sched.h.
const pfKthread = 0x00200000

func (s stat) kernelThread() bool { return s.Flags&pfKthread != 0 }
func (s stat) dead() bool         { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// parseStat parses /proc/PID/stat. The command name (field 2) is in
// parentheses and may contain anything, parentheses and spaces included, so
// the fields are counted from the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("malformed stat: no command name")
	}
	// f[0] is field 3 (state), so field n is f[n-3].
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22-2 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("malformed stat: %d fields after the command name", len(f))
	}
	flags, err := strconv.ParseUint(f[9-3], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("malformed stat flags: %w", err)
	}
	start, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("malformed stat start time: %w", err)
	}
	return stat{State: f[0][0], Flags: flags, StartTime: start}, nil
}

// parseNS parses the target of a /proc/PID/ns/* link: "mnt:[4026531841]".
func parseNS(link, kind string) (uint64, error) {
	s, ok := strings.CutPrefix(link, kind+":[")
	if ok {
		s, ok = strings.CutSuffix(s, "]")
	}
	if !ok {
		return 0, fmt.Errorf("malformed namespace link %q", link)
	}
	ino, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed namespace link %q: %w", link, err)
	}
	return ino, nil
}

// deletedSuffix is what the kernel appends to a link whose target was
// unlinked.
const deletedSuffix = " (deleted)"

// parseExe splits the target of /proc/PID/exe into the path and whether the
// file was deleted.
func parseExe(link string) (path string, deleted bool) {
	if p, ok := strings.CutSuffix(link, deletedSuffix); ok {
		return p, true
	}
	return link, false
}

// idPrefixes are the prefixes runtimes put before a container ID in a cgroup
// name: systemd scopes "docker-<id>.scope", "cri-containerd-<id>.scope",
// "crio-<id>.scope", "libpod-<id>.scope", and podman's cgroupfs
// "libpod-<id>".
var idPrefixes = []string{"docker-", "cri-containerd-", "crio-", "libpod-"}

// containerIDFromCgroup returns the container ID found in the content of
// /proc/PID/cgroup, or "" if there is none. Each line is
// "hierarchy-ID:controllers:path" (v1) or "0::path" (v2); the path is
// searched from its last component up, so an ID in a nested cgroup
// ("libpod-<id>.scope/container") is found, and a path relative to the
// reader's cgroup namespace ("/../cri-containerd-<id>.scope") works too.
// Only 64 hex digits count as an ID: shorter hex names are not containers.
func containerIDFromCgroup(content string) string {
	for line := range strings.Lines(content) {
		parts := strings.SplitN(strings.TrimRight(line, "\n"), ":", 3)
		if len(parts) != 3 {
			continue
		}
		path := parts[2]
		for path != "" {
			i := strings.LastIndexByte(path, '/')
			if id := idFromCgroupName(path[i+1:]); id != "" {
				return id
			}
			if i < 0 {
				break
			}
			path = path[:i]
		}
	}
	return ""
}

// idFromCgroupName returns the container ID in one component of a cgroup
// path, or "".
func idFromCgroupName(name string) string {
	// The systemd cgroup driver of containerd and runc on cgroup v1 may show
	// "slice:prefix:id" ("kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>").
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.TrimSuffix(name, ".scope")
	for _, p := range idPrefixes {
		if rest, ok := strings.CutPrefix(name, p); ok {
			name = rest
			break
		}
	}
	if len(name) == 64 && isHex(name) {
		return name
	}
	return ""
}
