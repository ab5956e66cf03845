package report

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/origin"
)

// Origin is where a finding's path comes from, in the JSON report, the
// webhook's payload and the log (docs/report.md). Every field is left out
// for a finding that was not classified (podfim diff).
type Origin struct {
	Origin      origin.Kind `json:"origin,omitempty"`
	Layer       int         `json:"layer,omitempty"`
	LayerDigest string      `json:"layer_digest,omitempty"`
	Mount       string      `json:"mount,omitempty"`
	// MountB64 is Mount in base64 when it is not valid UTF-8 (a mount
	// point is as hostile as any path), as path_b64 is for paths.
	MountB64 string `json:"mount_b64,omitempty"`
}

// NewOrigin returns o's JSON form.
func NewOrigin(o origin.Origin) Origin {
	j := Origin{Origin: o.Kind, Layer: o.Layer, LayerDigest: o.LayerDigest, Mount: o.Mount}
	if !utf8.ValidString(o.Mount) {
		j.MountB64 = base64.StdEncoding.EncodeToString([]byte(o.Mount))
	}
	return j
}

// OriginText is o for people, on one line: "image layer 2
// (sha256:0123456789ab)", "container", "volume /data" (the mount point
// quoted when it is not plainly printable), "baseline"; "" when o is zero.
func OriginText(o origin.Origin) string {
	switch {
	case o.Kind == origin.Image && o.Layer > 0:
		s := fmt.Sprintf("image layer %d", o.Layer)
		if d := o.LayerDigest; d != "" {
			s += " (" + quote(shortDigest(d)) + ")"
		}
		return s
	case o.Kind == origin.Volume:
		return "volume " + quote(o.Mount)
	}
	return string(o.Kind)
}

// shortDigest keeps the algorithm and the first 12 hex digits of a digest,
// as container tools show image IDs.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}
