package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/watch"
)

// The sidecar never holds a baseline decoded: what the monitor needs is
// its compact watch.Index (about half the memory of the decoded entries),
// read from the file as it is decoded, or built while a first-sight scan
// emits its entries into the baseline file. The baseline.Baseline kept
// beside it has its header only (Entries nil).

// loadIndexFile reads the baseline file at path into an index, checking
// what baseline.ReadFile checks (digest, signature, binding, bounds; the
// digest again at the end, so a file changed meanwhile fails). It returns
// the baseline's header without entries.
func loadIndexFile(path string, opts baseline.ReadOptions) (*baseline.Baseline, *watch.Index, error) {
	r, err := baseline.OpenFile(path, opts)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	ib := watch.NewIndexBuilder(r.Count)
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if err := ib.Add(e); err != nil {
			return nil, nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
		}
	}
	idx, err := ib.Finish()
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
	}
	b := &baseline.Baseline{Header: r.Header, Version: r.Version, Digest: r.Digest, Signed: r.Signed, KeyID: r.KeyID, PublicKey: r.PublicKey}
	return b, idx, nil
}

// takeBaseline scans root and streams its entries into a new baseline
// file at path (written atomically, 0600) and an index at once: the scan
// emits as it walks (no Count: the Writer spills the body to disk until
// the number is known), so neither the tree nor the file's body is ever
// held, only the index. It returns the baseline's header and the index.
func takeBaseline(ctx context.Context, root *scan.Root, opts scan.Options, h baseline.Header, path string) (*baseline.Baseline, *watch.Index, error) {
	w, err := baseline.CreateFile(path, nil)
	if err != nil {
		return nil, nil, err
	}
	defer w.Abort() // after a successful Close, a no-op
	if err := w.BeginUncounted(h); err != nil {
		return nil, nil, fmt.Errorf("failed to write the first-sight baseline: %w", err)
	}
	ib := watch.NewIndexBuilder(0)
	var emitErr error
	opts.Emit = func(e *attr.Entry) {
		if emitErr == nil {
			emitErr = errors.Join(w.Add(e), ib.Add(e))
		}
	}
	if _, err := root.Tree(ctx, opts); err != nil {
		return nil, nil, fmt.Errorf("failed to baseline the container at first sight: %w", err)
	}
	if emitErr != nil {
		return nil, nil, fmt.Errorf("failed to write the first-sight baseline: %w", emitErr)
	}
	if err := w.Close(); err != nil {
		return nil, nil, err
	}
	idx, err := ib.Finish()
	if err != nil {
		return nil, nil, err
	}
	return &baseline.Baseline{Header: h, Version: w.Version, Digest: w.Digest}, idx, nil
}
