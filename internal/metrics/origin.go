package metrics

// Origin says where the path of a finding comes from: the "origin" label
// of podfim_findings_total. Package origin owns how a finding is
// classified and names these origin.Kind (an alias of this type). The
// vocabulary is fixed and small, so the label stays low-cardinality: the
// layer and the mount point go in logs, Events and reports, never in a
// label.
type Origin string

// Origins.
const (
	// OriginImage: the path is in a baseline made from an image.
	OriginImage Origin = "image"
	// OriginBaseline: the path is in a baseline made from a tree or a
	// container at first sight, which cannot say where it came from.
	OriginBaseline Origin = "baseline"
	// OriginContainer: the path is not in the baseline and is on the
	// container's own root file system (its writable layer).
	OriginContainer Origin = "container"
	// OriginVolume: the path is at or under a mount point of the container
	// other than its root.
	OriginVolume Origin = "volume"
)

// Origins lists every Origin.
func Origins() []Origin {
	return []Origin{OriginImage, OriginBaseline, OriginContainer, OriginVolume}
}
