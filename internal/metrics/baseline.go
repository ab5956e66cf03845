package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// BaselineSource is where the baseline in use came from: the "source"
// label of podfim_baseline_info and podfim_baseline_refusals_total.
type BaselineSource string

// Baseline sources.
const (
	BaselineFile       BaselineSource = "file"        // read from a file (a volume, a ConfigMap, or the sidecar image)
	BaselineFirstSight BaselineSource = "first-sight" // recorded from the container when first seen
	BaselineRegistry   BaselineSource = "registry"    // the image's referrer, pulled and verified for the running digest
	BaselineConfigMap  BaselineSource = "configmap"   // of several in a mounted ConfigMap, the one for the running digest
)

// RefusalReason is why a baseline of an image-bound source (registry,
// configmap) was refused: the "reason" label of
// podfim_baseline_refusals_total.
type RefusalReason string

// Refusal reasons.
const (
	RefusedNoImage   RefusalReason = "no_image"  // the running image's digest is unknown
	RefusedNotFound  RefusalReason = "not_found" // no baseline for that digest
	RefusedSignature RefusalReason = "signature" // unsigned, or signed by another key
	RefusedImage     RefusalReason = "image"     // authentic, but made for another image (or subject)
	RefusedInvalid   RefusalReason = "invalid"   // corrupt, a newer format, over a limit
	RefusedPolicy    RefusalReason = "policy"    // made with another policy than the sidecar was given
	RefusedError     RefusalReason = "error"     // the registry or the file system failed
)

var refusalReasons = []RefusalReason{RefusedNoImage, RefusedNotFound, RefusedSignature, RefusedImage, RefusedInvalid, RefusedPolicy, RefusedError}

func newBaselineRefusals() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podfim_baseline_refusals_total",
		Help: "Times no baseline could be used for the running image (the pod stays unready), by source and reason.",
	}, []string{"source", "reason"})
	for _, s := range []BaselineSource{BaselineRegistry, BaselineConfigMap} {
		for _, r := range refusalReasons {
			c.WithLabelValues(string(s), string(r)).Add(0)
		}
	}
	return c
}

// SetBaseline records the baseline in use, replacing the one recorded
// before, so podfim_baseline_info always has exactly one series. digest is
// the baseline's digest in hex.
func (m *Sidecar) SetBaseline(digest string, source BaselineSource, signed bool) {
	if m == nil {
		return
	}
	m.baselineInfo.Reset()
	m.baselineInfo.WithLabelValues(digest, string(source), strconv.FormatBool(signed)).Set(1)
}

// BaselineRefused counts a refusal.
func (m *Sidecar) BaselineRefused(source BaselineSource, reason RefusalReason) {
	if m == nil {
		return
	}
	m.baselineRefusals.WithLabelValues(string(source), string(reason)).Inc()
}
