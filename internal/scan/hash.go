package scan

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// outcome is what became of an attempt to open an object that was listed.
type outcome int

const (
	opened     outcome = iota // the entry is complete (perhaps without a hash, with a Warning)
	vanished                  // gone (ENOENT): not recorded
	swapped                   // not the listed object any more: re-lstat and retry
	pseudoFile                // on a pseudo file system no rule names: not recorded (pseudo.go)
	failed                    // could not be opened: the entry has what the lstat gave, with a Warning
	aborted                   // the scan was cancelled
)

var errAborted = errors.New("scan aborted")

// hasher returns a reset hash state for alg, created on first use and reused.
func (w *worker) hasher(alg attr.Set) hash.Hash {
	var h *hash.Hash
	var mk func() hash.Hash
	switch alg {
	case attr.SHA256:
		h, mk = &w.sha256, sha256.New
	case attr.SHA512:
		h, mk = &w.sha512, sha512.New
	case attr.BLAKE3:
		h, mk = &w.blake3, func() hash.Hash { return blake3.New() }
	default:
		return nil
	}
	if *h == nil {
		*h = mk()
	} else {
		(*h).Reset()
	}
	return *h
}

// keep copies a digest into the worker's slab and returns a capped slice of
// it: one allocation per slabSize bytes of digests instead of one per file.
func (w *worker) keep(sum []byte) []byte {
	if cap(w.slab)-len(w.slab) < len(sum) {
		w.slab = make([]byte, 0, slabSize)
	}
	start := len(w.slab)
	w.slab = append(w.slab, sum...)
	return w.slab[start:len(w.slab):len(w.slab)]
}

// ErrNotRegular: the name is not a regular file (any more), so it is not
// opened for reading (by a scan, or by Root.OpenRegular).
var ErrNotRegular = errors.New("not a regular file")

// errPseudo: the file is on a pseudo file system no rule names (pseudo.go).
var errPseudo = errors.New("on a pseudo file system")

// openFile opens the regular file name in dirfd for reading, and nothing
// else: an object swapped in since the listing (a FIFO, whose open a
// writer would notice; a device, whose open runs its driver; a terminal,
// which could become ours) must never be opened. No open flag refuses a
// type, so the name is opened with O_PATH|O_NOFOLLOW, which opens no
// object (no driver call, no fsnotify event, and a symlink itself rather
// than its target), fstat'ed into st, and only a regular file is reopened
// for reading, through /proc/self/fd: that reopens the inode the O_PATH
// descriptor holds, which no rename can change. Without blocking, without
// becoming a controlling terminal, and without updating the atime when
// allowed (O_NOATIME needs ownership or CAP_FOWNER). A file on another
// device than its directory (dirDev), bind-mounted alone, is not opened
// when it is on a pseudo file system (errPseudo).
func (w *worker) openFile(dirfd int, name, path string, dirDev uint64, st *unix.Stat_t) (int, error) {
	pfd, err := openAt(dirfd, w.cname(name), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := fstat(pfd, st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, ErrNotRegular
	}
	if w.skipPseudo(pfd, path, st.Dev, dirDev) {
		return -1, errPseudo
	}
	p := w.fdName(pfd)
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	if !w.cfg.noNoatime.Load() {
		fd, err := openAt(w.cfg.procFd, p, flags|unix.O_NOATIME)
		if err != unix.EPERM {
			return fd, err
		}
		w.cfg.noNoatime.Store(true)
	}
	return openAt(w.cfg.procFd, p, flags)
}

// hashAt opens the regular file name in dirfd (on device dirDev), checks
// that it is the inode the listing saw (dev, ino), hashes it and completes e:
// metadata from the fstat after reading (the version that was hashed),
// Hash, Xattrs.
func (w *worker) hashAt(dirfd int, name string, e *attr.Entry, dirDev, dev, ino uint64) outcome {
	if w.cfg.beforeOpen != nil {
		w.cfg.beforeOpen(e.Path)
	}
	var before unix.Stat_t
	fd, err := w.openFile(dirfd, name, e.Path, dirDev, &before)
	if err != nil {
		switch err {
		case unix.ENOENT:
			return vanished
		case errPseudo:
			return pseudoFile
		case ErrNotRegular, unix.ENOTDIR:
			return swapped
		}
		w.warn(e.Path, "open", fmt.Errorf("failed to open %q: %w", e.Path, err))
		w.finishUnopened(dirfd, name, e)
		return failed
	}
	defer unix.Close(fd)
	if before.Dev != dev || before.Ino != ino {
		return swapped
	}
	return w.hashOpen(fd, e, &before)
}

// hashOpen hashes the open regular file fd, whose fstat is before, and
// completes e from the fstat after reading (the version that was hashed):
// metadata, Hash (and Prefix, see Options.Growing), Xattrs. A file that
// changed while it was read is read again once; if it changed again it is
// recorded without a hash.
func (w *worker) hashOpen(fd int, e *attr.Entry, before *unix.Stat_t) outcome {
	if w.cfg.shared != nil {
		fill(e, before, w.cfg.racyNs)
		if w.fromShared(e, before) {
			w.finishOpen(fd, e)
			return opened
		}
	}
	at, stop := w.prefixAt(e, before)
	if lim, read := w.cfg.maxFileBytes, w.readSize(e, before); lim > 0 && read > lim {
		fill(e, before, w.cfg.racyNs)
		w.finishOpen(fd, e)
		w.warn(e.Path, "limit", fmt.Errorf("size %d is over the limit of %d bytes, not hashed: %w", read, lim, ErrLimit))
		return opened
	}
	var after unix.Stat_t
	alg := e.HashAlg()
	for attempt := 0; ; attempt++ {
		n, err := w.hashFd(fd, before.Size, alg, at, stop)
		if err == errAborted {
			return aborted
		}
		if err == nil {
			if w.cfg.afterRead != nil {
				w.cfg.afterRead(e.Path)
			}
			err = fstat(fd, &after)
		}
		if err != nil {
			fill(e, before, w.cfg.racyNs)
			w.finishOpen(fd, e)
			if errors.Is(err, ErrLimit) {
				w.warn(e.Path, "limit", err)
			} else {
				w.warn(e.Path, "read", fmt.Errorf("failed to read %q: %w", e.Path, err))
			}
			return opened
		}
		if sameContent(before, &after) {
			fill(e, &after, w.cfg.racyNs)
			if w.pn > 0 {
				e.Prefix = &attr.Prefix{Size: at, Hash: w.keep(w.psum[:w.pn])}
			}
			if !stop || w.pn == 0 { // a prefix-only read that met EOF first read it all
				e.Hash = w.keep(w.sum[:n])
			}
			w.toShared(e, &after)
			w.stats.Hashed++
			w.finishOpen(fd, e)
			return opened
		}
		if attempt == 1 {
			// Changed during both reads (a log being written): record the
			// metadata without a hash that is of no single version.
			fill(e, &after, w.cfg.racyNs)
			w.finishOpen(fd, e)
			w.warn(e.Path, "changed", errChanged)
			return opened
		}
		*before = after
	}
}

// prefixAt returns the size of the prefix of e to hash (see
// Options.Growing), or -1, and whether to stop reading there.
func (w *worker) prefixAt(e *attr.Entry, st *unix.Stat_t) (int64, bool) {
	if w.cfg.growing == nil || !e.Attrs.Has(attr.Growing) {
		return -1, false
	}
	prior, ok := w.cfg.growing.Lookup(e.Path)
	if !ok || prior == nil || prior.Type != attr.TypeRegular || len(prior.Hash) == 0 ||
		prior.HashAlg() != e.HashAlg() || !prior.Attrs.Has(attr.Size) || prior.Size < 0 || prior.Size >= st.Size {
		return -1, false
	}
	return prior.Size, !w.cfg.growingFull
}

// readSize is how many bytes hashing e reads: its size, or the prefix of
// a Growing file read alone (Options.Growing).
func (w *worker) readSize(e *attr.Entry, st *unix.Stat_t) int64 {
	if at, stop := w.prefixAt(e, st); stop {
		return at
	}
	return st.Size
}

// hashFd reads fd from offset 0 and leaves the digest in w.sum[:n]. size is
// the size fstat gave before reading: the loop stops there without the extra
// read that would show EOF, since the fstat after reading catches a file that
// grew. A size of 0 (proc-like files) reads to EOF. With at >= 0 the digest
// of the first at bytes is also left in w.psum[:w.pn] (w.pn is 0 when the
// file ended before), and with stop the reading ends there.
func (w *worker) hashFd(fd int, size int64, alg attr.Set, at int64, stop bool) (int, error) {
	h := w.hasher(alg)
	limit := w.cfg.maxFileBytes
	var off int64
	w.pn = 0
	if at == 0 {
		w.pn = len(h.Sum(w.psum[:0]))
		if stop {
			return w.pn, nil
		}
	}
	for {
		if w.aborted() {
			return 0, errAborted
		}
		buf := w.buf
		if at > off && int64(len(buf)) > at-off {
			buf = buf[:at-off] // land exactly on the prefix's end
		}
		n, err := pread(fd, buf, off)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			break
		}
		h.Write(buf[:n])
		off += int64(n)
		w.stats.HashedBytes += int64(n)
		if limit > 0 && off > limit {
			return 0, fmt.Errorf("more than %d bytes, not hashed: %w", limit, ErrLimit)
		}
		if off == at {
			w.pn = len(h.Sum(w.psum[:0])) // Sum leaves the state as it is
			if stop {
				break
			}
		}
		if off == size {
			break
		}
	}
	return len(h.Sum(w.sum[:0])), nil
}
