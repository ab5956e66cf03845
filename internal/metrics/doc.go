// Package metrics owns every podfim_* Prometheus metric and the typed
// values of their labels. Each label's vocabulary is a string type declared
// beside the metric that uses it (ScanType, RescanReason, Action, ...), and
// the domain packages (watch, respond, kube, sidecar) take their values
// from here, so a value reaches the metric as it is, with no conversion
// that could drift. Known label values are created at zero when the metrics
// are registered, so dashboards show zeros instead of gaps.
//
// It is a leaf: it imports nothing of podfim but attr (whose Change is the
// kind of a finding), so that any stage may count without importing the
// HTTP server that exposes the registry (package server).
//
// A nil *Sidecar is valid and records nothing, for code paths (the CLI's
// check, tests) that run without a registry.
package metrics
