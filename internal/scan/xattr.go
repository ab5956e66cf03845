package scan

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// xattrListMax and xattrSizeMax are the kernel's limits (XATTR_LIST_MAX,
// XATTR_SIZE_MAX): bigger buffers are never needed.
const (
	xattrListMax = 64 << 10
	xattrSizeMax = 64 << 10
)

// xattrsAt returns the xattrs of name in dirfd, an object that is not open,
// without following it: listxattrat where the kernel has it, else through
// "/proc/self/fd/<dirfd>/<name>", which only looks up the already confined
// dirfd and one component, and l* calls do not follow the last one.
func (w *worker) xattrsAt(dirfd int, name string) ([]attr.Xattr, error) {
	if !w.cfg.noXattrat.Load() {
		x, err := w.xattrs(xsrc{fd: dirfd, name: w.cname(name)})
		if err != unix.ENOSYS && err != unix.EPERM { // EPERM: a seccomp filter that does not know it
			return x, err
		}
		w.cfg.noXattrat.Store(true)
	}
	return w.xattrs(xsrc{path: w.procPath(dirfd, name)})
}

// ErrXattrLimit is the warning for an object with more extended
// attributes than an entry holds (attr.MaxXattrs, attr.MaxXattrBytes).
var ErrXattrLimit = fmt.Errorf("more than %d extended attributes or %d bytes of them: the rest are not recorded", attr.MaxXattrs, attr.MaxXattrBytes)

// xattrs returns the extended attributes of an object, sorted by name.
// Nothing (or a file system without xattrs) gives nil. Beyond the limits
// of an entry it returns those that fit, in name order (security.* and
// system.* before user.*, which any writer of the file can add), and
// ErrXattrLimit.
func (w *worker) xattrs(src xsrc) ([]attr.Xattr, error) {
	n, err := w.listxattr(src)
	if err != nil || n == 0 {
		return nil, err
	}
	// The names are NUL-terminated in w.xlist, usable as C strings in place.
	var names [][]byte
	for list := w.xlist[:n]; len(list) > 0; {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			break // the kernel always terminates names; be safe anyway
		}
		names, list = append(names, list[:i:i+1]), list[i+1:]
	}
	slices.SortFunc(names, bytes.Compare)
	out := make([]attr.Xattr, 0, min(len(names), attr.MaxXattrs))
	total := 0
	for _, name := range names {
		// name[:1] reaches its NUL terminator when the name is empty.
		v, err := w.getxattr(src, &name[:1][0])
		if errors.Is(err, unix.ENODATA) {
			continue // removed since it was listed
		}
		if err != nil {
			return nilIfEmpty(out), err
		}
		if total += len(name) + len(v); len(out) == attr.MaxXattrs || total > attr.MaxXattrBytes {
			return nilIfEmpty(out), ErrXattrLimit
		}
		out = append(out, attr.Xattr{Name: w.internName(name), Value: w.internValue(v)})
	}
	return nilIfEmpty(out), nil
}

func nilIfEmpty(xs []attr.Xattr) []attr.Xattr {
	if len(xs) == 0 {
		return nil
	}
	return xs
}

// listxattr fills w.xlist with the names, growing it when the list grew
// between asking its size and reading it (ERANGE).
func (w *worker) listxattr(src xsrc) (int, error) {
	for range 8 {
		n, err := listxattr(src, w.xlist)
		switch err {
		case nil:
			return n, nil
		case unix.ENOTSUP:
			return 0, nil // no xattrs on this file system
		case unix.ERANGE:
			size, err := listxattr(src, nil)
			if err != nil {
				return 0, err
			}
			w.xlist = make([]byte, min(max(size, 2*len(w.xlist)), xattrListMax))
		default:
			return 0, err
		}
	}
	return 0, unix.ERANGE
}

// getxattr returns the value of one attribute, in w.xval (valid until the
// next call).
func (w *worker) getxattr(src xsrc, name *byte) ([]byte, error) {
	for range 8 {
		n, err := getxattr(src, name, w.xval)
		switch err {
		case nil:
			return w.xval[:n], nil
		case unix.ERANGE:
			size, err := getxattr(src, name, nil)
			if err != nil {
				return nil, err
			}
			w.xval = make([]byte, min(max(size, 2*len(w.xval)), xattrSizeMax))
		default:
			return nil, err
		}
	}
	return nil, unix.ERANGE
}

// internName returns a shared string for a name seen before: most files carry
// the same few names.
func (w *worker) internName(b []byte) string {
	if s, ok := w.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(w.names) < maxInterned {
		w.names[s] = s
	}
	return s
}

// internValue returns a copy of v, shared with other entries when it is short
// and seen before (SELinux labels repeat on every file).
func (w *worker) internValue(v []byte) []byte {
	if len(v) > maxInternVal {
		return bytes.Clone(v)
	}
	if s, ok := w.values[string(v)]; ok {
		return s
	}
	c := bytes.Clone(v)
	c = c[:len(c):len(c)] // an append by a reader must not write into a shared array
	if len(w.values) < maxInterned {
		w.values[string(c)] = c
	}
	return c
}
