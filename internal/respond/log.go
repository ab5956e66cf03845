package respond

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/report"
)

// Log keys, defined once so that every line of the package spells them the
// same way and log queries can rely on them.
const (
	keyPath       = "path"
	keyPathB64    = "path_b64" // the raw path when it is not valid UTF-8 (JSON would mangle it)
	keyKind       = "kind"
	keyAttributes = "attributes"
	keyOrigin     = "origin"       // where the path comes from (docs/report.md)
	keyLayer      = "layer"        // the image layer, for origin image
	keyLayerDig   = "layer_digest" // its digest
	keyMount      = "mount"        // the mount point, for origin volume
	keyMountB64   = "mount_b64"    // the raw mount point when it is not valid UTF-8
	keyAction     = "action"
	keyResult     = "result"
	keyReason     = "reason"
	keyError      = "error"
	keyOld        = "old" // the baseline's attributes, as in the JSON report
	keyNew        = "new" // the current attributes
	keyOldSHA256  = "old_sha256"
	keyNewSHA256  = "new_sha256"
	keyOldSHA512  = "old_sha512"
	keyNewSHA512  = "new_sha512"
	keyOldBLAKE3  = "old_blake3"
	keyNewBLAKE3  = "new_blake3"
	keyKills      = "kills"
	keyWindow     = "window"
	keyEscalate   = "escalate"
	keyAttempts   = "attempts"
	keyStatus     = "status"
	keyCount      = "count"
	// The evidence kept before the response (evidence.go).
	keyEvidenceID     = "evidence_id"
	keyEvidenceResult = "evidence_result"
	keyEvidenceSHA256 = "evidence_sha256"
	keyEvidenceType   = "evidence_type"
	keyDiffExcerpt    = "diff_excerpt"
	keyAttribution    = "attribution"
	keyProcesses      = "processes"
)

// Log messages.
const (
	msgViolation     = "integrity violation"
	msgOmitted       = "findings left out: the bound on open violations is reached"
	msgActionFailed  = "response failed"
	msgActionSkipped = "response skipped"
	msgRestored      = "file restored"
	msgKilled        = "app container killed"
	msgKillLimit     = "kill limit reached"
	msgDeleted       = "pod deletion requested"
	msgDeleteRefused = "pod not deleted; escalating"
	msgWebhookFailed = "webhook delivery failed"
	msgWebhookSent   = "webhook delivered"
)

// actionAttr and resultAttr log an action and its result with the values
// of podfim_actions_total's labels, so a log line and a series match.
func actionAttr(a Action) slog.Attr         { return slog.String(keyAction, string(a)) }
func resultAttr(r metrics.Result) slog.Attr { return slog.String(keyResult, string(r)) }

// logPath logs msg about path with attrs.
func (r *Responder) logPath(ctx context.Context, level slog.Level, msg, path string, attrs ...slog.Attr) {
	if !r.log.Enabled(ctx, level) {
		return
	}
	r.log.LogAttrs(ctx, level, msg, append(pathAttrs(path), attrs...)...)
}

// pathAttrs returns the path, and its base64 form when it is not valid UTF-8.
func pathAttrs(path string) []slog.Attr {
	a := []slog.Attr{slog.String(keyPath, path)}
	if !utf8.ValidString(path) {
		a = append(a, slog.String(keyPathB64, base64.StdEncoding.EncodeToString([]byte(path))))
	}
	return a
}

// logFinding is the log action: one line per finding, at warning level,
// with the old and new attributes as evidence.
func (r *Responder) logFinding(ctx context.Context, f compare.Finding) {
	names := f.Attributes
	if names == nil {
		names = []string{}
	}
	attrs := []slog.Attr{
		slog.String(keyKind, string(f.Kind)),
		slog.Any(keyAttributes, names),
	}
	attrs = append(attrs, originAttrs(f)...)
	if f.Old != nil {
		if k, v, ok := hashAttr(f.Old, true); ok {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	if f.New != nil {
		if k, v, ok := hashAttr(f.New, false); ok {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	if f.Old != nil {
		attrs = append(attrs, slog.Any(keyOld, report.EntryFields(f.Old)))
	}
	if f.New != nil {
		attrs = append(attrs, slog.Any(keyNew, report.EntryFields(f.New)))
	}
	attrs = append(attrs, evidenceAttrs(evidenceOf(ctx))...)
	r.logPath(ctx, slog.LevelWarn, msgViolation, f.Path, attrs...)
}

// originAttrs logs where the path of f comes from, with the keys and
// values of the JSON report (report.Origin); nothing when f has no origin.
func originAttrs(f compare.Finding) []slog.Attr {
	o := report.NewOrigin(f.Origin)
	if o.Origin == "" {
		return nil
	}
	a := []slog.Attr{slog.String(keyOrigin, string(o.Origin))}
	if o.Layer > 0 {
		a = append(a, slog.Int(keyLayer, o.Layer))
	}
	if o.LayerDigest != "" {
		a = append(a, slog.String(keyLayerDig, o.LayerDigest))
	}
	if o.Mount != "" {
		a = append(a, slog.String(keyMount, o.Mount))
	}
	if o.MountB64 != "" {
		a = append(a, slog.String(keyMountB64, o.MountB64))
	}
	return a
}

// hashAttr returns the key and hex value of an entry's content hash.
func hashAttr(e *attr.Entry, old bool) (string, string, bool) {
	if len(e.Hash) == 0 {
		return "", "", false
	}
	var k string
	switch e.HashAlg() {
	case attr.SHA256:
		k = pick(old, keyOldSHA256, keyNewSHA256)
	case attr.SHA512:
		k = pick(old, keyOldSHA512, keyNewSHA512)
	case attr.BLAKE3:
		k = pick(old, keyOldBLAKE3, keyNewBLAKE3)
	default:
		return "", "", false
	}
	return k, hex.EncodeToString(e.Hash), true
}

func pick(old bool, o, n string) string {
	if old {
		return o
	}
	return n
}
