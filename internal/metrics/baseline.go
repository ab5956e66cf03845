package metrics

import "strconv"

// BaselineSource is where the baseline in use came from: the "source"
// label of podfim_baseline_info.
type BaselineSource string

// Baseline sources.
const (
	BaselineFile       BaselineSource = "file"        // read from a file (a volume, a ConfigMap, or the sidecar image)
	BaselineFirstSight BaselineSource = "first-sight" // recorded from the container when first seen
)

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
