package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newUpdateCmd(s *streams) *cobra.Command {
	var (
		f        checkFlags
		signKey  string
		unsigned bool
	)
	c := &cobra.Command{
		Use:   "update --root DIR --baseline FILE",
		Short: "Show what changed, then accept the current state as the new baseline",
		Long: `update runs a check, prints its report, and then replaces --baseline with the
current state of --root (atomically). A signed baseline stays signed: pass
--sign-key, or --unsigned to drop the signature on purpose. It exits 0 when the
new baseline was written, whatever the check found.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if signKey != "" && unsigned {
				return failf(ExitUsage, "--sign-key and --unsigned contradict each other")
			}
			key, err := signingKey(signKey)
			if err != nil {
				return err
			}
			chk, err := f.run(c.Context(), s, true)
			if err != nil {
				return err
			}
			if chk.base.signed && key == nil && !unsigned {
				return failf(ExitUsage, "baseline %s is signed by key %s: pass --sign-key to sign the update, or --unsigned to drop the signature", f.baseline, chk.base.keyID)
			}
			if err := f.write(s, chk.report); err != nil {
				return err
			}
			if f.format == "json" {
				// Keep standard output one JSON document.
				return writeBaseline(&streams{out: s.errOut, errOut: s.errOut}, f.baseline, chk.policy, chk.scan, key)
			}
			fmt.Fprintln(s.out)
			return writeBaseline(s, f.baseline, chk.policy, chk.scan, key)
		},
	}
	f.register(c)
	c.Flags().StringVar(&signKey, "sign-key", "", "private key file to sign the new baseline with")
	c.Flags().BoolVar(&unsigned, "unsigned", false, "write the new baseline unsigned even though the old one was signed")
	return c
}
