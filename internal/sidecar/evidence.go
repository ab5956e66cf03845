package sidecar

import (
	"errors"
	"path/filepath"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/evidence"
)

// evidenceDir is the evidence's directory under the state directory.
const evidenceDir = "evidence"

// openEvidence opens the evidence store in the state directory. A store
// that cannot be opened is logged and left out: the sidecar goes on
// detecting and responding without it.
func (s *sidecar) openEvidence() *evidence.Store {
	if s.cfg.StateDir == "" {
		return nil
	}
	st, err := evidence.Open(filepath.Join(s.cfg.StateDir, evidenceDir), s.cfg.Evidence, nil)
	if err != nil {
		s.log.Error("cannot keep evidence: findings are reported without it", keyError, err.Error())
		return nil
	}
	return st
}

// capture keeps the evidence of a changed or added file before the
// response (nil when there is no store or nothing to keep). original is
// the file's original content when restore keeps it: the diff is made
// against it. A capture that loses the bytes (a full state volume) is
// logged and counted; the response runs all the same.
func (k *sink) capture(f compare.Finding, original []byte) *evidence.Record {
	st := k.s.evidence
	if st == nil || f.Kind == compare.Removed || k.root == nil {
		return nil
	}
	src := evidence.Source{Path: f.Path, Kind: f.Kind, Original: original}
	file, size, err := openRegular(k.root, f.Path)
	switch {
	case errors.Is(err, errNotRegular):
		// Nothing to keep; the finding holds its type and link target.
	case err != nil:
		src.Err = err
	default:
		defer file.Close()
		src.Content, src.Size = file, size
	}
	rec, err := st.Capture(src)
	k.s.metrics.Evidence(rec.Result)
	if err != nil {
		k.s.log.Error("evidence lost: the response runs without it", keyPath, f.Path, keyError, err.Error())
	}
	return rec
}

// errNotRegular is openRegular's error for anything but a regular file.
var errNotRegular = errors.New("not a regular file")
