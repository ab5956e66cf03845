package cli

import (
	"fmt"

	"github.com/podfim/podfim/internal/baseline"

	"github.com/spf13/cobra"
)

func newUpdateCmd(s *streams) *cobra.Command {
	var (
		f        checkFlags
		signKey  string
		unsigned bool
	)
	f.streams = s
	c := &cobra.Command{
		Use:   "update --root DIR --baseline FILE",
		Short: "Show what changed, then accept the current state as the new baseline",
		Long: `update runs a check, prints its report, and then replaces --baseline with the
current state of --root (atomically; the file keeps its mode). A signed
baseline stays signed: pass --sign-key, or --unsigned to drop the signature on
purpose. The new baseline keeps the old one's subject and gets a larger serial
(the old one plus 1, or the creation time in seconds if larger). It exits 0
when the new baseline was written, whatever the check found.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if signKey != "" && unsigned {
				return failf(ExitUsage, "--sign-key and --unsigned contradict each other")
			}
			key, err := signingKey(signKey)
			if err != nil {
				return err
			}
			o, err := f.open(s)
			if err != nil {
				return err
			}
			defer o.stream.Close()
			if o.base.signed && key == nil && !unsigned {
				return failf(ExitUsage, "baseline %s is signed by key %s: pass --sign-key to sign the update, or --unsigned to drop the signature", f.baseline, o.base.keyID)
			}
			if im := o.stream.Image; im != nil {
				// The tree is a container of the image at best: its state
				// is not what the image publisher shipped, and a baseline
				// of it must not carry the image's subject.
				return failf(ExitUsage, "baseline %s was made from image %s: make a new one from the image ('podfim baseline --image'), update would record the tree instead", f.baseline, im.Manifest)
			}
			if o.next, err = nextHeader(o); err != nil {
				return err
			}
			// The new baseline is written to a temporary file during the
			// scan and put in place only after the report is out.
			w, err := createBaseline(f.baseline, key)
			if err != nil {
				return err
			}
			defer w.Abort()
			chk, err := f.compare(c.Context(), o, w)
			if err != nil {
				return err
			}
			if err := f.write(s, chk.report); err != nil {
				return err
			}
			if f.format == "json" {
				// Keep standard output one JSON document.
				return commitBaseline(&streams{out: s.errOut, errOut: s.errOut}, f.baseline, w, chk.scan)
			}
			fmt.Fprintln(s.out)
			return commitBaseline(s, f.baseline, w, chk.scan)
		},
	}
	f.register(c)
	c.Flags().StringVar(&signKey, "sign-key", "", "private key file to sign the new baseline with")
	c.Flags().BoolVar(&unsigned, "unsigned", false, "write the new baseline unsigned even though the old one was signed")
	return c
}

// nextHeader returns the header of the baseline that replaces the one o
// opened: the same subject, a larger serial.
func nextHeader(o *opened) (baseline.Header, error) {
	h, err := newHeader(o.policy, o.stream.Subject, 0)
	if err != nil {
		return h, err
	}
	h.Serial = max(h.Serial, o.stream.Serial+1)
	return h, nil
}
