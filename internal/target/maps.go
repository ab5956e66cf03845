package target

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Mapping is a writable shared mapping of a file by a process of the
// container: writes through it change the file's content without write(2)
// (no inotify event until munmap) and without updating its mtime or ctime
// until writeback (on tmpfs, never), so neither inotify nor a quick check
// sees them (issue 11 item 6).
type Mapping struct {
	PID  int
	Exe  string
	Path string // in the container's root, as /proc/PID/maps names it
}

// maxMapsLine bounds one line of /proc/PID/maps (a path of PATH_MAX plus
// the fields before it); longer lines are skipped whole.
const maxMapsLine = unix.PathMax + 256

// WritableSharedMappings lists the files that the processes of container c
// (those running now, started since c was found included) map shared and
// writable, at most max of them (deduplicated by process and path), and
// how many more there were. Only processes in the container's own mount
// namespace are read: /proc/PID/maps names files relative to the root of
// the reader's view of the process's namespace, which is the container's
// root only there. Mappings of deleted files are left out: they are no
// longer the file at their path.
func (f *Finder) WritableSharedMappings(c *Container, max int) ([]Mapping, int, error) {
	cs, err := f.Containers()
	if err != nil {
		return nil, 0, err
	}
	var procs []Process
	for i := range cs {
		if cs[i].MountNS == c.MountNS && cs[i].ContainerID == c.ContainerID {
			procs = cs[i].Processes
		}
	}
	var out []Mapping
	over := 0
	seen := map[Mapping]bool{}
	for _, p := range procs {
		if p.MountNS != c.MountNS {
			continue
		}
		paths, err := writableShared(f.proc(), p)
		if errors.Is(err, errVanished) || errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, over, err
		}
		for _, path := range paths {
			m := Mapping{PID: p.PID, Exe: p.Exe, Path: path}
			switch {
			case seen[m]:
			case len(out) >= max:
				over++
			default:
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out, over, nil
}

// writableShared returns the paths of the files p maps shared and writable,
// each once.
func writableShared(proc string, p Process) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	err := eachMapsLine(proc, p, func(line []byte) {
		if path, ok := parseMapsLine(line); ok && !seen[path] {
			seen[path] = true
			out = append(out, path)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachMapsLine calls fn with each line of p's /proc/PID/maps, read line by
// line (a process may have 65,530 mappings: the file is never held whole);
// a line too long to be a mapping of a path is skipped. line is valid
// until fn returns.
func eachMapsLine(proc string, p Process, fn func(line []byte)) error {
	d, err := openListed(proc, p)
	if err != nil {
		return err
	}
	defer d.close()
	fd, err := d.openat("maps", unix.O_RDONLY)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), d.path+"/maps")
	defer f.Close()
	r := bufio.NewReaderSize(f, maxMapsLine)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		fn(line)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, unix.ESRCH):
			return fmt.Errorf("%s/maps: %w", d.path, errVanished)
		default:
			return fmt.Errorf("failed to read %s/maps: %w", d.path, err)
		}
	}
}

// parseMapsLine returns the path of a /proc/PID/maps line that maps a file
// shared and writable ("rw-s", "-w-s"):
//
//	7f1c2a000000-7f1c2a001000 rw-s 00000000 00:2d 12 /www/index.html
//
// The kernel escapes a newline in the path as \012; " (deleted)" ends the
// path of a file deleted since.
func parseMapsLine(line []byte) (string, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	var fields [5][]byte
	rest := line
	for i := range fields {
		rest = bytes.TrimLeft(rest, " ")
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return "", false // no path: an anonymous mapping
		}
		fields[i], rest = rest[:j], rest[j:]
	}
	perms := fields[1]
	if len(perms) != 4 || perms[1] != 'w' || perms[3] != 's' {
		return "", false
	}
	path := string(bytes.TrimLeft(rest, " "))
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, " (deleted)") {
		return "", false // [heap], [stack], a memfd, a deleted file
	}
	return strings.ReplaceAll(path, `\012`, "\n"), true
}
