package sidecar

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/watch"
)

// rootWriter restores files of the target through a handle on its root
// (respond.RootWriter). It never follows a symlink: the parent directory is
// resolved with scan.Root.OpenDir (no symlink in any component), the new
// file is created with O_EXCL|O_NOFOLLOW next to the old one and renamed
// over it, so whatever was at the path (a symlink planted by the attacker
// included) is replaced, never written through.
type rootWriter struct {
	root *scan.Root
	// lookup gives the baseline entry of the parent directory, whose mtime
	// is put back after the rename (nil: leave it).
	lookup func(path string) (*attr.Entry, bool)
}

// Restore implements respond.RootWriter.
func (w *rootWriter) Restore(path string, want *attr.Entry, content []byte) error {
	if want.Type != attr.TypeRegular {
		return fmt.Errorf("restore %q: only regular files can be restored, not %s", path, want.Type)
	}
	i := strings.LastIndexByte(path, '/')
	if i < 0 || path == "/" {
		return fmt.Errorf("restore %q: not a file path", path)
	}
	dir, name := path[:i], path[i+1:]
	if dir == "" {
		dir = "/"
	}
	d, err := w.root.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("restore %q: %w", path, err)
	}
	defer d.Close()
	dfd := int(d.Fd())

	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := ".podfim-restore-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("restore %q: failed to create a temporary file: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	ok := false
	defer func() {
		f.Close()
		if !ok {
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if _, err := f.Write(content); err != nil {
		return fmt.Errorf("restore %q: %w", path, err)
	}
	// Owner before mode: chown clears setuid and setgid.
	if want.Attrs.Any(attr.UID | attr.GID) {
		if err := unix.Fchown(fd, int(want.UID), int(want.GID)); err != nil {
			return fmt.Errorf("restore %q: chown: %w", path, err)
		}
	}
	if want.Attrs.Has(attr.Mode) {
		if err := unix.Fchmod(fd, want.Mode); err != nil {
			return fmt.Errorf("restore %q: chmod: %w", path, err)
		}
	}
	if want.Attrs.Has(attr.Xattrs) {
		if err := setXattrs(fd, want.Xattrs); err != nil {
			return fmt.Errorf("restore %q: %w", path, err)
		}
	}
	if want.Attrs.Has(attr.Mtime) {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(want.Mtime)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts, 0); err != nil {
			return fmt.Errorf("restore %q: set mtime: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("restore %q: fsync: %w", path, err)
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return fmt.Errorf("restore %q: rename: %w", path, err)
	}
	ok = true
	// The rename changed the directory's mtime: put the baseline's back, so
	// only its ctime (which nothing can set) tells that podfim wrote there.
	if w.lookup != nil {
		if pe, found := w.lookup(dir); found && pe.Attrs.Has(attr.Mtime) && pe.Type == attr.TypeDir {
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(pe.Mtime)}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(dfd), ts, 0); err != nil {
				return fmt.Errorf("restore %q: set the directory's mtime back: %w", path, err)
			}
		}
	}
	return nil
}

// setXattrs makes the file's extended attributes exactly xs (a new file may
// have inherited a default ACL from its directory).
func setXattrs(fd int, xs []attr.Xattr) error {
	want := map[string]bool{}
	for _, x := range xs {
		want[x.Name] = true
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("set xattr %q: %w", x.Name, err)
		}
	}
	buf := make([]byte, 64<<10)
	n, err := unix.Flistxattr(fd, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("list xattrs: %w", err)
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" && !want[name] {
			if err := unix.Fremovexattr(fd, name); err != nil {
				return fmt.Errorf("remove xattr %q: %w", name, err)
			}
		}
	}
	return nil
}

// objects is the content store of restorable files: the original bytes of
// each, named by their hash, in the sidecar's private state directory.
// Only bytes that match the baseline's hash are ever stored or returned.
type objects struct {
	dir      string
	maxBytes int64
}

func hasherFor(alg attr.Set) hash.Hash {
	switch alg {
	case attr.SHA256:
		return sha256.New()
	case attr.SHA512:
		return sha512.New()
	case attr.BLAKE3:
		return blake3.New()
	}
	return nil
}

func (o *objects) name(e *attr.Entry) string {
	return filepath.Join(o.dir, e.HashAlg().String()+"-"+hex.EncodeToString(e.Hash))
}

// get returns the kept content of e, or nil when none is kept.
func (o *objects) get(e *attr.Entry) []byte {
	if o == nil || e == nil || e.Type != attr.TypeRegular || len(e.Hash) == 0 || e.Size > o.maxBytes {
		return nil
	}
	if e.Size == 0 {
		return []byte{}
	}
	b, err := os.ReadFile(o.name(e))
	if err != nil || !matches(e, b) {
		return nil
	}
	return b
}

func matches(e *attr.Entry, b []byte) bool {
	h := hasherFor(e.HashAlg())
	if h == nil || int64(len(b)) != e.Size {
		return false
	}
	h.Write(b)
	return string(h.Sum(nil)) == string(e.Hash)
}

// keep stores the content of every restorable regular file of the baseline
// that the container still holds unchanged. Bytes are read confined to the
// root and stored only when they hash to the baseline's value.
func (o *objects) keep(root *scan.Root, idx *watch.Index) (kept int, err error) {
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return 0, fmt.Errorf("failed to create %q: %w", o.dir, err)
	}
	idx.Each(func(e *attr.Entry) bool {
		var ok bool
		if ok, err = o.keepOne(root, e); ok {
			kept++
		}
		return err == nil
	})
	return kept, err
}

// keepOne keeps the content of e if it is restorable and the container
// still holds it unchanged, and reports whether it is kept.
func (o *objects) keepOne(root *scan.Root, e *attr.Entry) (bool, error) {
	if e.Type != attr.TypeRegular || len(e.Hash) == 0 || e.Size == 0 || e.Size > o.maxBytes {
		return false, nil
	}
	name := o.name(e)
	if _, err := os.Stat(name); err == nil {
		return true, nil
	}
	b, err := readConfined(root, e.Path, o.maxBytes)
	if err != nil || !matches(e, b) {
		return false, nil // changed or gone already: nothing trustworthy to keep
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return false, fmt.Errorf("failed to keep %q: %w", e.Path, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("failed to keep %q: %w", e.Path, err)
	}
	return true, nil
}

// readConfined reads a regular file of the root without following any
// symlink, up to max bytes.
func readConfined(root *scan.Root, path string, max int64) ([]byte, error) {
	f, _, err := root.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%q is larger than %d bytes", path, max)
	}
	return b, nil
}
