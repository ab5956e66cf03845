package origin

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
)

// Bounds of a mount table. A pod's container has a few dozen mounts of
// about 150 bytes each; the app can add more only with CAP_SYS_ADMIN, and
// whatever it adds must not grow the reader without end.
const (
	// MaxMountinfoBytes bounds what is read of a mountinfo file.
	MaxMountinfoBytes = 1 << 20
	// MaxMounts bounds the distinct mount points of a table.
	MaxMounts = 4096
)

// ErrTooLarge is returned for a mount table over MaxMountinfoBytes or
// MaxMounts: it is refused whole, never cut, since a mount point left out
// would turn the runtime's additions under it into findings of another
// origin, and one invented would hide them.
var ErrTooLarge = errors.New("mount table too large")

// Mounts is the mount table of a container: its mount points, as the
// container's processes see them (relative to the container's root). A
// nil *Mounts is an empty table.
type Mounts struct {
	points []string // distinct, clean, sorted; "/" not included
	set    map[string]bool
}

// NewMounts returns the table of the given mount points (absolute paths;
// "/" is the root file system and not a mount point of interest).
func NewMounts(points []string) *Mounts {
	m := &Mounts{set: map[string]bool{}}
	for _, p := range points {
		p = path.Clean(p)
		if p == "/" || m.set[p] {
			continue
		}
		m.set[p] = true
		m.points = append(m.points, p)
	}
	slices.Sort(m.points)
	return m
}

// Points returns the mount points, sorted, "/" left out.
func (m *Mounts) Points() []string {
	if m == nil {
		return nil
	}
	return slices.Clone(m.points)
}

// IsPoint reports whether p is a mount point other than "/".
func (m *Mounts) IsPoint(p string) bool { return m != nil && m.set[p] }

// Under returns the deepest mount point other than "/" that p is at or
// under. It walks up p's directories (at most one per path component),
// so its cost does not grow with the table.
func (m *Mounts) Under(p string) (string, bool) {
	if m == nil || len(m.set) == 0 {
		return "", false
	}
	for d := p; d != "/" && d != "." && d != ""; d = path.Dir(d) {
		if m.set[d] {
			return d, true
		}
	}
	return "", false
}

// Ancestors returns the directories strictly above the mount points, "/"
// included when there is any mount point: those the runtime creates or
// copies up in each new container.
func (m *Mounts) Ancestors() []string {
	if m == nil {
		return nil
	}
	return ancestors(m.points)
}

// ReadMountinfo reads a mountinfo file (a /proc/PID/mountinfo, or a copy
// of one given for an unpacked tree) within MaxMountinfoBytes.
func ReadMountinfo(r io.Reader) (*Mounts, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxMountinfoBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMountinfoBytes {
		return nil, fmt.Errorf("longer than %d bytes: %w", MaxMountinfoBytes, ErrTooLarge)
	}
	return ParseMountinfo(b)
}

// ReadMountinfoFile is ReadMountinfo of a named file.
func ReadMountinfoFile(name string) (*Mounts, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("failed to open mount table: %w", err)
	}
	defer f.Close()
	m, err := ReadMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("failed to read mount table %q: %w", name, err)
	}
	return m, nil
}

// ParseMountinfo returns the table of a mountinfo file (see proc(5)): the
// distinct mount points (field 5), unescaped (the kernel writes space,
// tab, newline and backslash as \ooo) and cleaned. The kernel lists only
// mounts reachable from the process's root, relative to it. A malformed
// line, a relative mount point or more than MaxMounts are errors.
func ParseMountinfo(b []byte) (*Mounts, error) {
	var points []string
	seen := map[string]bool{}
	for n, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		// The kernel separates fields with one space and escapes the
		// spaces of names; other white space (a vertical tab, U+00A0) is
		// part of a name, which strings.Fields would split.
		fields := strings.Split(string(line), " ")
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
		mp = path.Clean(mp)
		if seen[mp] {
			continue
		}
		if len(seen) == MaxMounts {
			return nil, fmt.Errorf("more than %d mount points: %w", MaxMounts, ErrTooLarge)
		}
		seen[mp] = true
		points = append(points, mp)
	}
	return NewMounts(points), nil
}

// unescapeOctal undoes the kernel's \ooo escapes in mountinfo paths.
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
