package scan

import (
	"bytes"
	"errors"
	"slices"
	"strings"

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

// xattrs returns every extended attribute of an object, sorted by name.
// Nothing (or a file system without xattrs) gives nil.
func (w *worker) xattrs(src xsrc) ([]attr.Xattr, error) {
	n, err := w.listxattr(src)
	if err != nil || n == 0 {
		return nil, err
	}
	// The names are NUL-terminated in w.xlist, usable as C strings in place.
	list := w.xlist[:n]
	out := make([]attr.Xattr, 0, bytes.Count(list, []byte{0}))
	for len(list) > 0 {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			break // the kernel always terminates names; be safe anyway
		}
		name := list[:i]
		v, err := w.getxattr(src, &list[0])
		list = list[i+1:]
		if errors.Is(err, unix.ENODATA) {
			continue // removed since it was listed
		}
		if err != nil {
			return out, err
		}
		out = append(out, attr.Xattr{Name: w.internName(name), Value: w.internValue(v)})
	}
	if len(out) == 0 {
		return nil, nil
	}
	slices.SortFunc(out, func(a, b attr.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
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
