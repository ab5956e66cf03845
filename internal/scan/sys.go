package scan

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Thin system call wrappers that take NUL-terminated names from a reusable
// buffer, so that statting and opening a file allocates nothing (the x/sys
// wrappers copy every name to a new buffer). All of them retry on EINTR: the
// Go runtime preempts threads with signals.

// cstr copies s and a terminating NUL into *buf (grown as needed) and returns
// a pointer to the first byte. The pointer is valid until the next call with
// the same buffer.
func cstr(buf *[]byte, s string) *byte {
	b := append((*buf)[:0], s...)
	b = append(b, 0)
	*buf = b
	return &b[0]
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// lstatAt is fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW).
func lstatAt(dirfd int, name *byte, st *unix.Stat_t) error {
	for {
		_, _, e := unix.Syscall6(sysFstatat, uintptr(dirfd), uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		if e != unix.EINTR {
			return errnoErr(e)
		}
	}
}

// openAt is openat(dirfd, name, flags).
func openAt(dirfd int, name *byte, flags int) (int, error) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)), uintptr(flags), 0, 0, 0)
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return -1, e
		}
	}
}

// readlinkAt is readlinkat(dirfd, name, buf).
func readlinkAt(dirfd int, name *byte, buf []byte) (int, error) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}

func fstat(fd int, st *unix.Stat_t) error {
	for {
		err := unix.Fstat(fd, st)
		if err != unix.EINTR {
			return err
		}
	}
}

func pread(fd int, buf []byte, off int64) (int, error) {
	for {
		n, err := unix.Pread(fd, buf, off)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func getdents(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// ptr returns a pointer to the first byte of b, or nil for an empty b (the
// kernel's way to ask for a size).
func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// xsrc names the object whose xattrs are read: an open fd (flistxattr), a
// name in a directory fd (listxattrat with AT_SYMLINK_NOFOLLOW, Linux 6.13+),
// or a path that does not follow its last component (llistxattr).
type xsrc struct {
	fd   int   // the open object, or the directory of name
	name *byte // set: listxattrat(fd, name)
	path *byte // set: llistxattr(path)
}

// xattrArgs is the kernel's struct xattr_args for getxattrat.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

func listxattr(s xsrc, buf []byte) (int, error) {
	for {
		var r uintptr
		var e unix.Errno
		switch {
		case s.name != nil:
			r, _, e = unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(s.fd), uintptr(unsafe.Pointer(s.name)), unix.AT_SYMLINK_NOFOLLOW, uintptr(ptr(buf)), uintptr(len(buf)), 0)
		case s.path != nil:
			r, _, e = unix.Syscall(unix.SYS_LLISTXATTR, uintptr(unsafe.Pointer(s.path)), uintptr(ptr(buf)), uintptr(len(buf)))
		default:
			r, _, e = unix.Syscall(unix.SYS_FLISTXATTR, uintptr(s.fd), uintptr(ptr(buf)), uintptr(len(buf)))
		}
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}

func getxattr(s xsrc, attr *byte, buf []byte) (int, error) {
	for {
		var r uintptr
		var e unix.Errno
		switch {
		case s.name != nil:
			args := xattrArgs{value: uint64(uintptr(ptr(buf))), size: uint32(len(buf))}
			r, _, e = unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(s.fd), uintptr(unsafe.Pointer(s.name)), unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(attr)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
		case s.path != nil:
			r, _, e = unix.Syscall6(unix.SYS_LGETXATTR, uintptr(unsafe.Pointer(s.path)), uintptr(unsafe.Pointer(attr)), uintptr(ptr(buf)), uintptr(len(buf)), 0, 0)
		default:
			r, _, e = unix.Syscall6(unix.SYS_FGETXATTR, uintptr(s.fd), uintptr(unsafe.Pointer(attr)), uintptr(ptr(buf)), uintptr(len(buf)), 0, 0)
		}
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}
