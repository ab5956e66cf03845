// Package evidence keeps what a finding is about before a response
// destroys it: the new bytes of a changed or added regular file
// (content-addressed by sha256), a unified diff against the original bytes
// for text files, and one record per capture, in the sidecar's private
// state directory. It owns that directory's evidence/ subtree and the
// bounds on it; reading the file confined to the target's root and keeping
// the original bytes are the caller's (the sidecar's restore store).
//
// Layout under the store's directory:
//
//	objects/sha256-<hex>   kept bytes (a file's content, or a diff), mode 0600
//	records/<id>.json      one Record per capture
//
// Everything in a record that came from the target (path, excerpt) is
// hostile: Excerpt is already escaped, Path is raw and must be quoted by
// whoever prints it.
package evidence

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
)

// Defaults of Limits, used for zero fields.
const (
	DefaultMaxBytes     = 64 << 20 // all kept objects together
	DefaultMaxFileBytes = 1 << 20  // the bytes kept of one file
	DefaultMaxDiffBytes = 64 << 10 // the largest file (either side) a diff is made of
	DefaultMaxRecords   = 10000    // records kept; beyond, captures are counted, not stored
	// ExcerptBytes bounds the diff excerpt in logs, Events and webhooks,
	// before escaping (escaping at most quadruples it).
	ExcerptBytes = 200
)

// Limits bound what the store holds. Every one is reached only by an app
// that writes a lot: what goes over is counted in a Record's Result.
type Limits struct {
	MaxBytes     int64 // total bytes of objects; a capture that would pass it keeps no bytes
	MaxFileBytes int64 // bytes kept of one file; the rest is cut (Truncated)
	MaxDiffBytes int64 // a diff is made only when both sides are text up to this size
	MaxRecords   int   // records kept
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxFileBytes == 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	if l.MaxFileBytes > l.MaxBytes {
		l.MaxFileBytes = l.MaxBytes
	}
	if l.MaxDiffBytes == 0 {
		l.MaxDiffBytes = DefaultMaxDiffBytes
	}
	if l.MaxRecords == 0 {
		l.MaxRecords = DefaultMaxRecords
	}
	return l
}

// Result says what became of a capture: the "result" label of
// podfim_evidence_total (metrics.EvidenceResult, where the list is kept).
type Result = metrics.EvidenceResult

// Results.
const (
	ResultKept       = metrics.EvidenceKept       // every byte of the file is kept
	ResultTruncated  = metrics.EvidenceTruncated  // the first MaxFileBytes are kept
	ResultOverTotal  = metrics.EvidenceOverTotal  // MaxBytes is reached: hash and type only
	ResultOverCount  = metrics.EvidenceOverCount  // MaxRecords is reached: logged, not stored
	ResultError      = metrics.EvidenceError      // writing failed (a full disk): logged
	ResultUnreadable = metrics.EvidenceUnreadable // the file was gone or could not be read
	ResultNoContent  = metrics.EvidenceNotRegular // nothing to keep: not a regular file
)

// Record is what one capture kept. It is the JSON of records/<id>.json.
type Record struct {
	ID   string       `json:"id"`
	Time time.Time    `json:"time"`
	Path string       `json:"path"`
	Kind compare.Kind `json:"kind"`
	// Type is what the first bytes say the file is.
	Type Type `json:"type"`
	// Size is the file's size when it was read; SHA256 the hash of the
	// bytes read (all of them unless Truncated).
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	// Object names the kept bytes under objects/ ("sha256-<hex>"); empty
	// when none were kept (Result says why).
	Object    string `json:"object,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// OriginalSHA256 is the hash of the original bytes the diff was made
	// against, when they were known.
	OriginalSHA256 string `json:"original_sha256,omitempty"`
	// Diff names the unified diff under objects/, when one was made.
	Diff string `json:"diff,omitempty"`
	// Excerpt is the start of the diff's changed lines, or a description
	// of a binary file, Go-quoted: no newline or terminal escape of the
	// file reaches a log line through it.
	Excerpt string `json:"excerpt,omitempty"`
	Result  Result `json:"result"`
	// Error says why bytes were not kept (Result error or unreadable).
	Error string `json:"error,omitempty"`
	// Attribution is who may have written the file (see Attribution).
	Attribution *Attribution `json:"attribution,omitempty"`
}

// Store is the evidence directory of one sidecar. It is safe for
// concurrent use.
type Store struct {
	dir   string
	lim   Limits
	clock func() time.Time

	mu      sync.Mutex
	used    int64 // bytes of objects
	records int
	seq     uint64
}

// ErrNoSpace is wrapped by Capture's error when the disk is full.
var ErrNoSpace = errors.New("no space left for evidence")

// Open opens (creating it) the evidence directory dir. It counts what an
// earlier run kept against the limits. clock nil is time.Now.
func Open(dir string, lim Limits, clock func() time.Time) (*Store, error) {
	if clock == nil {
		clock = time.Now
	}
	s := &Store{dir: dir, lim: lim.withDefaults(), clock: clock}
	for _, d := range []string{dir, s.objects(), s.recordsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create %q: %w", d, err)
		}
	}
	var err error
	if s.used, _, err = sizeOf(s.objects()); err != nil {
		return nil, err
	}
	if _, s.records, err = sizeOf(s.recordsDir()); err != nil {
		return nil, err
	}
	return s, nil
}

// Limits returns the limits in force (defaults filled).
func (s *Store) Limits() Limits { return s.lim }

func (s *Store) objects() string    { return filepath.Join(s.dir, "objects") }
func (s *Store) recordsDir() string { return filepath.Join(s.dir, "records") }

// sizeOf returns the total size and number of the regular files in dir.
func sizeOf(dir string) (int64, int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to read %q: %w", dir, err)
	}
	var total int64
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if info, err := e.Info(); err == nil {
			total += info.Size()
			n++
		}
	}
	return total, n, nil
}

// Source is the file a capture reads.
type Source struct {
	Path string
	Kind compare.Kind
	// Content is the file, opened by the caller confined to the target's
	// root; nil when it could not be opened (Err says why) or is not a
	// regular file. Capture reads at most MaxFileBytes of it.
	Content io.Reader
	Size    int64 // from fstat of Content
	Err     error
	// Original is the file's original content (nil when unknown): the
	// diff is made against it.
	Original []byte
	// Attribution is stored with the record as it is.
	Attribution *Attribution
}

// Capture keeps the evidence of src and records it. It always returns a
// record, which the caller logs; the error says why evidence was lost
// (wrapping ErrNoSpace on a full disk) and is nil when the store holds the
// record. Capture never deletes or rewrites what an earlier capture kept.
func (s *Store) Capture(src Source) (*Record, error) {
	rec := &Record{Time: s.clock().UTC(), Path: src.Path, Kind: src.Kind, Attribution: src.Attribution}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	// Sorted by time; the random part keeps two sidecar runs (same pid in
	// a new container, same clock reading) from overwriting each other.
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	rec.ID = fmt.Sprintf("%s-%06d-%x", rec.Time.Format("20060102T150405.000000000Z"), s.seq, rnd)
	if src.Content == nil {
		rec.Result, rec.Type = ResultNoContent, TypeNone
		if src.Err != nil {
			rec.Result, rec.Error = ResultUnreadable, src.Err.Error()
		}
		return rec, s.store(rec)
	}
	data, err := io.ReadAll(io.LimitReader(src.Content, s.lim.MaxFileBytes+1))
	if err != nil {
		rec.Result, rec.Error = ResultUnreadable, err.Error()
		return rec, s.store(rec)
	}
	rec.Size = max(src.Size, int64(len(data)))
	if int64(len(data)) > s.lim.MaxFileBytes {
		data, rec.Truncated = data[:s.lim.MaxFileBytes], true
	}
	sum := sha256.Sum256(data)
	rec.SHA256 = hex.EncodeToString(sum[:])
	rec.Type = Sniff(data, rec.Size)
	var diff []byte
	if src.Original != nil {
		o := sha256.Sum256(src.Original)
		rec.OriginalSHA256 = hex.EncodeToString(o[:])
		diff = s.diff(src.Path, src.Original, data, rec)
	}
	rec.Excerpt = excerpt(rec, diff)
	if err := s.keep(rec, data, diff); err != nil {
		return rec, s.lost(rec, err)
	}
	return rec, s.store(rec)
}

// diff returns the unified diff of text old and new within the limits, or
// nil.
func (s *Store) diff(path string, old, new []byte, rec *Record) []byte {
	if rec.Truncated || int64(len(old)) > s.lim.MaxDiffBytes || int64(len(new)) > s.lim.MaxDiffBytes {
		return nil
	}
	if !Sniff(old, int64(len(old))).Text() || !rec.Type.Text() {
		return nil
	}
	if bytes.Equal(old, new) {
		return nil
	}
	return Unified(path, old, new)
}

// keep writes the file's bytes and the diff as objects, within MaxBytes,
// and sets rec's Result; the error is a failed write.
func (s *Store) keep(rec *Record, data, diff []byte) error {
	need := s.newBytes(data) + s.newBytes(diff)
	if s.used+need > s.lim.MaxBytes {
		rec.Result = ResultOverTotal
		return nil
	}
	name, err := s.putObject(data)
	if err != nil {
		return err
	}
	rec.Object = name
	if diff != nil {
		if rec.Diff, err = s.putObject(diff); err != nil {
			return err
		}
	}
	rec.Result = ResultKept
	if rec.Truncated {
		rec.Result = ResultTruncated
	}
	return nil
}

// lost marks rec as lost to err and tries to store the record anyway (a
// record is small: it may still fit where the bytes did not).
func (s *Store) lost(rec *Record, err error) error {
	rec.Result, rec.Error = ResultError, err.Error()
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		err = fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	if serr := s.store(rec); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// newBytes is what keeping b would add (0 when already kept).
func (s *Store) newBytes(b []byte) int64 {
	if b == nil {
		return 0
	}
	if _, err := os.Lstat(filepath.Join(s.objects(), ObjectName(b))); err == nil {
		return 0
	}
	return int64(len(b))
}

// ObjectName is the name under objects/ of b: "sha256-" and its hex hash.
func ObjectName(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256-" + hex.EncodeToString(sum[:])
}

func (s *Store) putObject(b []byte) (string, error) {
	name := ObjectName(b)
	path := filepath.Join(s.objects(), name)
	if _, err := os.Lstat(path); err == nil {
		return name, nil // content-addressed: already kept
	}
	if err := writeAtomic(path, b); err != nil {
		return "", err
	}
	s.used += int64(len(b))
	return name, nil
}

// store writes rec as records/<id>.json within MaxRecords.
func (s *Store) store(rec *Record) error {
	if s.records >= s.lim.MaxRecords {
		rec.Result = ResultOverCount
		return nil
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(s.recordsDir(), rec.ID+".json"), append(b, '\n')); err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		rec.Result, rec.Error = ResultError, err.Error()
		return fmt.Errorf("failed to store the evidence record: %w", err)
	}
	s.records++
	return nil
}

// writeAtomic writes b to path through a temporary file renamed over it,
// so that a crash of the sidecar leaves either nothing or all of it. It
// does not fsync: evidence is taken on the response's path (before a
// restore), and three fsyncs would add milliseconds to every response; a
// node crash may lose the last captures.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	return nil
}
