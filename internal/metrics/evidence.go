package metrics

import "github.com/prometheus/client_golang/prometheus"

// EvidenceResult is what became of one capture of evidence: the "result"
// label of podfim_evidence_total. Package evidence names it
// evidence.Result (an alias) and says what each means.
type EvidenceResult string

// EvidenceResults.
const (
	EvidenceKept       EvidenceResult = "kept"
	EvidenceTruncated  EvidenceResult = "truncated"
	EvidenceOverTotal  EvidenceResult = "over_total"
	EvidenceOverCount  EvidenceResult = "over_count"
	EvidenceError      EvidenceResult = "error"
	EvidenceUnreadable EvidenceResult = "unreadable"
	EvidenceNotRegular EvidenceResult = "not_regular"
)

// EvidenceResults lists every EvidenceResult.
func EvidenceResults() []EvidenceResult {
	return []EvidenceResult{EvidenceKept, EvidenceTruncated, EvidenceOverTotal, EvidenceOverCount, EvidenceError, EvidenceUnreadable, EvidenceNotRegular}
}

func newEvidenceMetric() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podfim_evidence_total",
		Help: "Captures of evidence (a changed or added file's bytes and diff) before the response, by result.",
	}, []string{"result"})
	for _, r := range EvidenceResults() {
		c.WithLabelValues(string(r)).Add(0)
	}
	return c
}

// Evidence counts one capture of evidence.
func (m *Sidecar) Evidence(r EvidenceResult) {
	if m == nil {
		return
	}
	m.evidence.WithLabelValues(string(r)).Inc()
}
