package respond

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/podfim/podfim/internal/evidence"
)

// evidenceKey is the context key of WithEvidence.
type evidenceKey struct{}

// WithEvidence returns a context that carries what was captured of the
// finding before the response (package evidence) and who may have written
// it, so that the log line, the Event and the webhook of the finding name
// it. Like WithEventTime it travels with the one finding Handle is given.
func WithEvidence(ctx context.Context, rec *evidence.Record) context.Context {
	return context.WithValue(ctx, evidenceKey{}, rec)
}

// evidenceOf returns the evidence WithEvidence put in ctx, or nil.
func evidenceOf(ctx context.Context) *evidence.Record {
	rec, _ := ctx.Value(evidenceKey{}).(*evidence.Record)
	return rec
}

// evidenceAttrs are the log attributes of rec: its id, what became of it,
// the hash of the kept bytes, the escaped excerpt, and the attribution.
func evidenceAttrs(rec *evidence.Record) []slog.Attr {
	if rec == nil {
		return nil
	}
	a := []slog.Attr{
		slog.String(keyEvidenceID, rec.ID),
		slog.String(keyEvidenceResult, string(rec.Result)),
	}
	if rec.SHA256 != "" {
		a = append(a, slog.String(keyEvidenceSHA256, rec.SHA256), slog.String(keyEvidenceType, string(rec.Type)))
	}
	if rec.Excerpt != "" {
		a = append(a, slog.String(keyDiffExcerpt, rec.Excerpt))
	}
	if at := rec.Attribution; at != nil {
		a = append(a, slog.String(keyAttribution, string(at.Method)))
		if len(at.Processes) > 0 {
			a = append(a, slog.Any(keyProcesses, at.Processes))
		}
	}
	return a
}

// evidenceMessage is the part of a finding's Event that names the
// evidence: short, since an Event's message is bounded, and made of
// escaped text only.
func evidenceMessage(rec *evidence.Record) string {
	if rec == nil {
		return ""
	}
	s := ""
	if rec.SHA256 != "" {
		s = fmt.Sprintf("; evidence sha256:%.16s (%s)", rec.SHA256, rec.Result)
	}
	if rec.Excerpt != "" {
		// Already escaped (one printable line): only cut.
		s += "; diff: " + cut(rec.Excerpt, 120)
	}
	if at := rec.Attribution; at != nil {
		s += "; attribution: " + string(at.Method)
		if len(at.Processes) > 0 {
			p := at.Processes[0]
			s += fmt.Sprintf(" pid %d uid %d %s", p.PID, p.UID, evidence.Escape(p.Exe, 80))
		}
	}
	return s
}

// cut returns s cut to max bytes, "..." appended when cut.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// EvidencePayload is the evidence of a finding in the webhook's payload.
type EvidencePayload struct {
	ID          string                `json:"id"`
	Result      evidence.Result       `json:"result"`
	SHA256      string                `json:"sha256,omitempty"`
	Type        evidence.Type         `json:"type,omitempty"`
	DiffExcerpt string                `json:"diff_excerpt,omitempty"`
	Attribution *evidence.Attribution `json:"attribution,omitempty"`
}

func evidencePayload(rec *evidence.Record) *EvidencePayload {
	if rec == nil {
		return nil
	}
	return &EvidencePayload{ID: rec.ID, Result: rec.Result, SHA256: rec.SHA256, Type: rec.Type, DiffExcerpt: rec.Excerpt, Attribution: rec.Attribution}
}
