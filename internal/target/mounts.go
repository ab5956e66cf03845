package target

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxMountinfo bounds what is read of a container's mountinfo: a pod's
// container has a few dozen mounts (about 150 bytes each).
const maxMountinfo = 1 << 20

// MountPoints returns the mount points of the container as its processes
// see them (paths relative to the container's root, "/" first, sorted),
// read from the main process's mountinfo after the same checks as
// OpenRoot: the process is the one listed and still in the container's
// mount namespace.
//
// The runtime creates the mount points an image lacks (/proc, /dev,
// /etc/hosts, the service-account token's directories) in each
// container's new writable layer, so a fresh container of the same image
// differs from the last one in the directories above its mount points.
func (c *Container) MountPoints() ([]string, error) {
	for _, p := range c.rootCandidates() {
		mps, err := mountPoints(procOrDefault(c.proc), p)
		if err == nil || !isVanished(err) {
			return mps, err
		}
	}
	return nil, fmt.Errorf("container %s: %w", c, ErrGone)
}

func isVanished(err error) bool {
	return errors.Is(err, errVanished) || errors.Is(err, ErrGone)
}

func mountPoints(proc string, p Process) ([]string, error) {
	d, err := openListed(proc, p)
	if err != nil {
		return nil, err
	}
	defer d.close()
	fd, err := d.openat("mountinfo", unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path+"/mountinfo")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMountinfo+1))
	if err != nil {
		return nil, d.err("mountinfo", err)
	}
	if len(b) > maxMountinfo {
		return nil, fmt.Errorf("failed to read %s: longer than %d bytes", f.Name(), maxMountinfo)
	}
	return parseMountinfo(b)
}

// parseMountinfo returns the distinct mount points (field 5, see proc(5))
// of a mountinfo file, unescaped, cleaned and sorted. The kernel lists only
// mounts reachable from the reading process's root, relative to it.
func parseMountinfo(b []byte) ([]string, error) {
	var mps []string
	for n, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		fields := strings.Fields(string(line))
		if len(fields) < 5 {
			return nil, fmt.Errorf("mountinfo line %d: %d fields, want at least 5", n+1, len(fields))
		}
		mp, err := unescapeOctal(fields[4])
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n+1, err)
		}
		if !strings.HasPrefix(mp, "/") {
			return nil, fmt.Errorf("mountinfo line %d: mount point %q is not absolute", n+1, mp)
		}
		mps = append(mps, path.Clean(mp))
	}
	slices.Sort(mps)
	return slices.Compact(mps), nil
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mountinfo paths.
func unescapeOctal(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			sb.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		sb.WriteByte(byte(v))
		i += 3
	}
	return sb.String(), nil
}

// MountAncestors returns the directories strictly above the given mount
// points, "/" included when any mount point other than "/" is given.
func MountAncestors(mountPoints []string) []string {
	seen := map[string]bool{}
	for _, mp := range mountPoints {
		for d := path.Dir(mp); mp != "/"; d = path.Dir(d) {
			seen[d] = true
			if d == "/" {
				break
			}
		}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}
