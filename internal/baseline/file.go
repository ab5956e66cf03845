package baseline

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ReadFile reads the baseline stored at path (see Read). Symlinks are
// followed: the path is the operator's choice, and Kubernetes mounts
// ConfigMaps and Secrets through them.
func ReadFile(path string, opts ReadOptions) (*Baseline, error) {
	r, err := OpenFile(path, opts)
	if err != nil {
		return nil, err
	}
	return r.readAll()
}

// OpenFile opens the baseline stored at path (see Open and ReadFile). It
// has read the file and closed it when it returns: the Reader holds the
// payload, so there is nothing to close. Errors, from Next too, name the
// file.
func OpenFile(path string, opts ReadOptions) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read baseline: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		// A FIFO or a device would block or never end.
		return nil, fmt.Errorf("failed to read baseline %q: not a regular file (%s)", path, st.Mode().Type())
	}
	r, err := open(f, opts, st.Size())
	if err != nil {
		return nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
	}
	r.name = path
	return r, nil
}

// WriteFile writes b to path atomically (see Write): readers see the old
// file or the new one, never a part of either, also across a crash. It
// writes a temporary file in the same directory, syncs it, renames it over
// path and syncs the directory. On any failure before the rename (a full
// disk, say) it removes the temporary file and leaves an existing file
// untouched. A symlink at path is replaced, not written through. A
// replaced file keeps its permissions; a new one gets 0644,
// since a baseline holds no secrets and the sidecar reading it may run as
// another user than the one who wrote it.
func WriteFile(path string, b *Baseline, key ed25519.PrivateKey) error {
	h, payload, err := encode(b, key)
	if err != nil {
		return fmt.Errorf("failed to write baseline %q: %w", path, err)
	}
	if err := writeAtomic(path, h, payload); err != nil {
		return fmt.Errorf("failed to write baseline %q: %w", path, err)
	}
	b.setStored(h)
	return nil
}

func writeAtomic(path string, h *header, payload []byte) (err error) {
	perm := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		perm = st.Mode().Perm()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeTo(tmp, h, payload); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	renamed = true
	// The new file is in place; a failure to sync the directory only
	// means the rename might not survive a crash.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("renamed, but failed to sync the directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("renamed, but failed to sync the directory: %w", err)
	}
	return nil
}
