package baseline

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/podfim/podfim/internal/attr"
)

// ReadFile reads the baseline stored at path (see Read). Symlinks are
// followed: the path is the operator's choice, and Kubernetes mounts
// ConfigMaps and Secrets through them.
func ReadFile(path string, opts ReadOptions) (*Baseline, error) {
	r, err := OpenFile(path, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.readAll()
}

// OpenFile opens the baseline stored at path (see Open and ReadFile).
// Unlike Open it does not hold the payload: it reads the file once to check
// its digest and signature, and Next then reads it again, decoding as it
// goes, and checks the digest again at the end: a file changed in between
// makes Next fail with ErrDigest, never yield a result. The Reader keeps the
// file open until Close. Errors, from Next too, name the file.
func OpenFile(path string, opts ReadOptions) (*Reader, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer, before the check below could refuse it. It changes nothing
	// for a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to read baseline: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		// A FIFO or a device would block or never end.
		return nil, fmt.Errorf("failed to read baseline %q: not a regular file (%s)", path, st.Mode().Type())
	}
	r, err := openFile(f, opts, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
	}
	r.name, r.closer = path, f
	return r, nil
}

// WriteFile writes b to path atomically (see Write and CreateFile): readers
// see the old file or the new one, never a part of either, also across a
// crash.
func WriteFile(path string, b *Baseline, key ed25519.PrivateKey) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("failed to write baseline %q: %w", path, err)
	}
	// Everything is checked before anything is created.
	if err := validate(b); err != nil {
		return fmt.Errorf("failed to write baseline %q: %w", path, err)
	}
	w, err := CreateFile(path, key)
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.Begin(b.Header, len(b.Entries)); err != nil {
		return err
	}
	for i := range b.Entries {
		if err := w.Add(&b.Entries[i]); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	b.setStored(w.h)
	return nil
}

// Writer writes a baseline file one entry at a time, so that a scan can be
// stored as it is produced without ever holding the whole tree: CreateFile,
// Begin with the number of entries, Add each entry in path order, Close.
// The file is the one Write would give for the same entries, byte for byte.
//
// The entries go to a temporary file in the same directory, after room for
// the header; Close writes the header (the payload's length and digest,
// and the signature over them), syncs the file, renames it over path and
// syncs the directory. Readers see the old file or the new one, never a
// part of either, also across a crash. On any failure, and on Abort, the
// temporary file is removed and an existing file is left untouched. A
// symlink at path is replaced, not written through. A new file gets mode
// 0600, as AIDE's database does: a baseline lists every path of the tree
// with its hash (/etc/shadow's too), which is reconnaissance for anyone
// who reads it. A replaced file keeps its permissions, so an operator who
// made it readable for a sidecar of another user keeps that choice.
//
// Every entry is checked as Write checks it (see checkEntry); the first
// error is kept, returned by Add and Close, and makes Close remove the
// temporary file.
type Writer struct {
	// Set by Close on success: what was written.
	Version   int
	Digest    [32]byte          // sha256 of the compressed payload
	Signed    bool              // the file is signed
	KeyID     string            // KeyID of PublicKey, when signed
	PublicKey ed25519.PublicKey // the key that signed the file, when signed

	path    string
	key     ed25519.PrivateKey
	record  []byte // the stored Header, from Begin
	layers  int    // the image layers an entry may name
	perm    fs.FileMode
	tmp     *os.File
	out     *bufio.Writer
	pw      *payloadWriter
	count   int
	added   int
	prev    string // the path of the last entry added
	started bool
	err     error   // the first failure; sticky
	h       *header // set by a successful Close
	// With BeginUncounted: the body goes to spill through spillEnc until
	// Close (see UnknownCount).
	spill    *spill
	spillEnc *bodyEncoder
}

// CreateFile starts a baseline file at path, signed with key unless it is
// nil: it creates the temporary file, so that a directory that cannot be
// written fails before any work is done.
func CreateFile(path string, key ed25519.PrivateKey) (*Writer, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("failed to write baseline %q: %w", path, err)
	}
	// Lstat: the symlink at path is replaced (see Writer), so it is not
	// where the mode comes from; a symlink to a world-readable file would
	// otherwise make the baseline world-readable.
	perm := fs.FileMode(0o600)
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().IsRegular() {
			perm = st.Mode().Perm()
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("failed to write baseline %q: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("failed to write baseline %q: %w", path, err)
	}
	return &Writer{path: path, key: key, perm: perm, tmp: tmp}, nil
}

// fail records the first failure, removes the temporary file and returns
// the failure, wrapped with the file name.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("failed to write baseline %q: %w", w.path, err)
	}
	w.Abort()
	return w.err
}

// Begin writes the start of the baseline: the header h (what the baseline
// is for, see Header) and the number of entries that Add will be given.
func (w *Writer) Begin(h Header, count int) error { return w.begin(h, count, false) }

// BeginUncounted is Begin for entries whose number is not known before
// they are added (a scan that emits as it walks). The body starts with the
// count, inside the compressed payload, so the Writer spills the encoded
// body to an unlinked temporary file next to the baseline and compresses
// it after the count at Close: the file is the same, byte for byte, as
// with the count given to Begin, and the entries are never held in memory.
func (w *Writer) BeginUncounted(h Header) error { return w.begin(h, 0, true) }

func (w *Writer) begin(h Header, count int, uncounted bool) error {
	switch {
	case w.err != nil:
		return w.err
	case w.started:
		return w.fail(errors.New("Begin called twice"))
	}
	w.started = true
	if err := checkStart(0, &h, count); err != nil {
		return w.fail(err)
	}
	w.record, w.layers = appendRecord(nil, &h), h.layers()
	room := header{version: Version, record: w.record}
	if w.key != nil {
		room.flags = flagSigned
	}
	// Room for the header, which Close writes once the payload is known.
	w.out = bufio.NewWriterSize(w.tmp, 64<<10)
	if _, err := w.out.Write(make([]byte, room.size())); err != nil {
		return w.fail(err)
	}
	w.count = count
	if uncounted {
		if err := w.beginSpill(); err != nil {
			return w.fail(err)
		}
		return nil
	}
	pw, err := newPayloadWriter(w.out)
	if err == nil {
		err = pw.begin(count)
	}
	if err != nil {
		return w.fail(err)
	}
	w.pw = pw
	return nil
}

// Add writes the next entry. Entries must come in strictly increasing
// attr.ComparePaths order; an entry whose extended attributes are not in
// name order is stored sorted. Add does not keep e, but keeps its Path
// string until the next call.
func (w *Writer) Add(e *attr.Entry) error {
	switch {
	case w.err != nil:
		return w.err
	case !w.started:
		return w.fail(errors.New("Add called before Begin"))
	case w.added == w.count && w.spill == nil:
		return w.fail(fmt.Errorf("more entries than the %d announced", w.count))
	case w.added == MaxEntries:
		return w.fail(fmt.Errorf("more than %d entries", MaxEntries))
	}
	if err := checkNext(w.added, w.prev, e, w.layers); err != nil {
		return w.fail(err)
	}
	enc := w.spillEnc
	if enc == nil {
		enc = w.pw.enc
	}
	if err := enc.add(e); err != nil {
		return w.fail(err)
	}
	w.prev = e.Path
	w.added++
	return nil
}

// Close finishes the file and puts it in place (see Writer). It returns
// the first error of any earlier call, and fails if fewer entries were
// added than Begin announced.
func (w *Writer) Close() error {
	switch {
	case w.err != nil:
		return w.err
	case w.h != nil:
		return nil
	case !w.started:
		return w.fail(errors.New("Close called before Begin"))
	case w.added != w.count && w.spill == nil:
		return w.fail(fmt.Errorf("%d entries added, %d announced", w.added, w.count))
	}
	if w.spill != nil {
		if err := w.finishSpill(); err != nil {
			return w.fail(err)
		}
	}
	h, err := w.pw.close(w.key, w.record)
	if err != nil {
		return w.fail(err)
	}
	if err := w.out.Flush(); err != nil {
		return w.fail(err)
	}
	if _, err := w.tmp.WriteAt(h.marshal(nil), 0); err != nil {
		return w.fail(err)
	}
	if err := w.tmp.Chmod(w.perm); err != nil {
		return w.fail(err)
	}
	if err := w.tmp.Sync(); err != nil {
		return w.fail(err)
	}
	if err := w.tmp.Close(); err != nil {
		return w.fail(err)
	}
	if err := os.Rename(w.tmp.Name(), w.path); err != nil {
		return w.fail(err)
	}
	w.tmp, w.pw, w.out = nil, nil, nil
	w.h = h
	w.Version, w.Digest, w.Signed, w.KeyID, w.PublicKey = stored(h)
	// The new file is in place; a failure to sync the directory only
	// means the rename might not survive a crash.
	dir := filepath.Dir(w.path)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to write baseline %q: renamed, but failed to sync the directory: %w", w.path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to write baseline %q: renamed, but failed to sync the directory: %w", w.path, err)
	}
	return nil
}

// Abort removes the temporary file, unless Close has put it in place. It
// may be called at any time, more than once, and after Close (a deferred
// Abort is the usual way to clean up after an error).
func (w *Writer) Abort() {
	if w.tmp == nil {
		return
	}
	w.tmp.Close()
	os.Remove(w.tmp.Name())
	w.spill.close()
	w.tmp, w.pw, w.out, w.spill, w.spillEnc = nil, nil, nil, nil, nil
	if w.err == nil && w.h == nil {
		w.err = fmt.Errorf("failed to write baseline %q: aborted", w.path)
	}
}

// Count returns the number of entries added so far.
func (w *Writer) Count() int { return w.added }
