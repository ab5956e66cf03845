package attr

// Change is how an entry differs from its baseline: the kind of a finding.
// It lives beside Entry, not in package compare that decides it, so that
// every stage shares one vocabulary: compare decides it, report prints it
// and metrics (a leaf that imports nothing of podfim but attr) counts it as
// the "kind" label of podfim_findings_total.
type Change string

// Changes.
const (
	Added   Change = "added"   // in the tree, not in the baseline
	Removed Change = "removed" // in the baseline, not in the tree
	Changed Change = "changed" // in both, with attributes that differ
	// Exec is execution drift (package drift): a process runs a file the
	// baseline does not hold. It is not a result of comparing trees, so
	// Changes does not list it.
	Exec Change = "exec"
)

// Changes lists every Change, in the order reports count them.
func Changes() []Change { return []Change{Added, Removed, Changed} }
