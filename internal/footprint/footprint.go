// Package footprint gives back the memory that start-up used and that a
// long-running podfim does not need: the pages of its own binary that
// package initialisation touched.
//
// Initialising podfim's packages (client-go, the Kubernetes API types,
// protobuf, Prometheus...) runs code and reads data scattered over most
// of the binary, and the kernel maps each touched page with its
// neighbours (fault-around): `podfim version` ends with about 14 MiB of
// the binary's pages resident and 3 MiB of heap and stacks
// (docs/benchmarks.md, "Footprint"). Those pages are clean copies of the
// executable file, shared with every process of the binary and reclaimable,
// but they count in the process's resident set, which is what a sidecar's
// users see. Release drops the process's mappings of them; what the
// process uses afterwards comes back on first touch, from the page cache.
package footprint

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mapping is one line of /proc/self/smaps: an address range and what the
// process maps there.
type mapping struct {
	lo, hi uintptr
	perms  string
	path   string
	anon   int64 // bytes of private (copy-on-write) pages: never dropped
	rss    int64
}

// Release drops the resident pages of the executable's read-only private
// mappings (its code and read-only data) and returns how many bytes were
// resident in them. A mapping that holds any private copy of a page (a
// relocated read-only segment of a position-independent binary, a
// debugger's breakpoint) is left alone: dropping it would bring back the
// file's bytes. Writable mappings (the data segment) are never touched.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("failed to find the executable: %w", err)
	}
	ms, err := readSmaps("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	var released int64
	for _, m := range ms {
		if m.path != exe || m.perms[1] == 'w' || m.perms[3] != 'p' || m.anon != 0 || m.rss == 0 {
			continue
		}
		// An address range, not Go memory: the raw call takes it as is.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.lo, m.hi-m.lo, unix.MADV_DONTNEED); e != 0 {
			return released, fmt.Errorf("failed to release %x-%x of %q: %w", m.lo, m.hi, exe, e)
		}
		released += m.rss
	}
	return released, nil
}

// Resident returns the bytes of the executable's mappings that are
// resident, and of those the private (anonymous) ones.
func Resident() (rss, anon int64, err error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, 0, fmt.Errorf("failed to find the executable: %w", err)
	}
	ms, err := readSmaps("/proc/self/smaps")
	if err != nil {
		return 0, 0, err
	}
	for _, m := range ms {
		if m.path == exe {
			rss += m.rss
			anon += m.anon
		}
	}
	return rss, anon, nil
}

var errMalformed = errors.New("malformed smaps")

// readSmaps parses the mappings of an smaps file: the header line of each
// mapping, and its Rss and Anonymous fields.
func readSmaps(path string) ([]mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	var ms []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if k, ok := strings.CutSuffix(f[0], ":"); ok && len(ms) > 0 && len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			switch k {
			case "Rss":
				ms[len(ms)-1].rss = n << 10
			case "Anonymous":
				ms[len(ms)-1].anon = n << 10
			}
			continue
		}
		m, err := parseHeader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %q", path, err, line)
		}
		ms = append(ms, m)
	}
	return ms, sc.Err()
}

// parseHeader parses "lo-hi perms offset dev inode [path]".
func parseHeader(f []string) (mapping, error) {
	if len(f) < 5 || len(f[1]) != 4 {
		return mapping{}, errMalformed
	}
	a, b, ok := strings.Cut(f[0], "-")
	lo, err1 := strconv.ParseUint(a, 16, 64)
	hi, err2 := strconv.ParseUint(b, 16, 64)
	if !ok || err1 != nil || err2 != nil || hi < lo {
		return mapping{}, errMalformed
	}
	m := mapping{lo: uintptr(lo), hi: uintptr(hi), perms: f[1]}
	if len(f) >= 6 {
		m.path = strings.Join(f[5:], " ")
	}
	return m, nil
}
