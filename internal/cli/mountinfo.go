package cli

import (
	"regexp"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/origin"
)

// mountinfoNone is --mountinfo's value that turns the mount table off.
const mountinfoNone = "none"

// procRoot matches a process's root directory in /proc: its mount table
// is beside it.
var procRoot = regexp.MustCompile(`^/proc/([0-9]+|self|thread-self)/root/?$`)

func registerMountinfo(c *cobra.Command, dst *string) {
	c.Flags().StringVar(dst, "mountinfo", "", "mount table of the container the tree is (a copy of its /proc/PID/mountinfo), to tell "+
		"volumes and the runtime's own additions apart; default: /proc/PID/mountinfo when --root is /proc/PID/root; 'none': no mount table")
}

// mounts returns the mount table --mountinfo names, or the one beside a
// --root of /proc/PID/root; nil when there is none.
func (f *checkFlags) mounts() (*origin.Mounts, error) {
	name := f.mountinfo
	if name == "" {
		m := procRoot.FindStringSubmatch(f.root)
		if m == nil {
			return nil, nil
		}
		name = "/proc/" + m[1] + "/mountinfo"
	}
	if name == mountinfoNone {
		return nil, nil
	}
	m, err := origin.ReadMountinfoFile(name)
	if err != nil {
		return nil, failf(ExitIO, "%w (--mountinfo none compares without one)", err)
	}
	return m, nil
}

// classifier returns how the findings of a check against the baseline r
// are classified (origin.Classifier) in a tree whose mount table is m.
func classifier(r *baseline.Reader, m *origin.Mounts) *origin.Classifier {
	var layers []string
	if r.Image != nil {
		layers = r.Image.Layers
	}
	return origin.New(r.Image != nil, layers, m)
}
