package respond

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"log/slog"

	"github.com/zeebo/blake3"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
)

// restore is the restore action: for a removed or changed regular file
// whose content was kept, write the content and attributes of the baseline
// back through the target's RootWriter. Anything else is skipped, with the
// reason logged: the violation then stays open for the other actions.
func (r *Responder) restore(ctx context.Context, f compare.Finding, content []byte) (metrics.Result, error) {
	want := f.Old
	if want != nil && content == nil && want.Attrs.Has(attr.Size) && want.Size == 0 {
		content = []byte{} // nothing needs keeping for an empty file
	}
	var reason string
	switch {
	case f.Kind == compare.Added:
		reason = "an added file has no baseline state to restore"
	case want == nil:
		reason = "no baseline entry"
	case want.Type != attr.TypeRegular:
		reason = "only regular files are restored, not " + want.Type.String()
	case content == nil:
		reason = "no content was kept for this file"
	case int64(len(content)) > r.plan.RestoreMaxBytes:
		reason = fmt.Sprintf("the content (%d bytes) is larger than restoreMaxBytes (%d)", len(content), r.plan.RestoreMaxBytes)
	}
	if reason != "" {
		r.logPath(ctx, slog.LevelInfo, msgActionSkipped, f.Path, actionAttr(ActionRestore),
			resultAttr(metrics.ResultSkipped), slog.String(keyReason, reason))
		return metrics.ResultSkipped, nil
	}
	// Never write back bytes that are not the baseline's: a caller bug or
	// a kept copy from the wrong file would plant it in the container.
	if err := checkContent(want, content); err != nil {
		return metrics.ResultError, err
	}
	if r.target == nil {
		return metrics.ResultError, errors.New("no target")
	}
	w := r.target.Root()
	if w == nil {
		return metrics.ResultError, errors.New("the target has no root writer")
	}
	if err := w.Restore(f.Path, want, content); err != nil {
		return metrics.ResultError, fmt.Errorf("failed to restore: %w", err)
	}
	r.logPath(ctx, slog.LevelWarn, msgRestored, f.Path, actionAttr(ActionRestore),
		resultAttr(metrics.ResultOK), slog.String(keyKind, string(f.Kind)))
	r.event(corev1EventNormal, kube.ReasonFileRestored, fmt.Sprintf("restored %s from the baseline", f.Path))
	return metrics.ResultOK, nil
}

// checkContent verifies content against the size and hash the baseline
// recorded, when it recorded them.
func checkContent(want *attr.Entry, content []byte) error {
	if want.Attrs.Has(attr.Size) && int64(len(content)) != want.Size {
		return fmt.Errorf("the kept content has %d bytes, the baseline %d", len(content), want.Size)
	}
	if len(want.Hash) == 0 {
		return nil
	}
	var sum []byte
	switch alg := want.HashAlg(); alg {
	case attr.SHA256:
		s := sha256.Sum256(content)
		sum = s[:]
	case attr.SHA512:
		s := sha512.Sum512(content)
		sum = s[:]
	case attr.BLAKE3:
		// An extendable-output hash: read as many bytes as were recorded.
		h := blake3.New()
		_, _ = h.Write(content)
		sum = make([]byte, len(want.Hash))
		if _, err := h.Digest().Read(sum); err != nil {
			return fmt.Errorf("failed to hash the kept content: %w", err)
		}
	default:
		return nil
	}
	if !bytes.Equal(sum, want.Hash) {
		return fmt.Errorf("the kept content does not match the baseline's %s", want.HashAlg())
	}
	return nil
}
