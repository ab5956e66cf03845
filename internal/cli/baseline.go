package cli

import (
	"github.com/spf13/cobra"
)

func newBaselineCmd(s *streams) *cobra.Command {
	var (
		sf      scanFlags
		out     string
		signKey string
		subject string
		serial  uint64
	)
	c := &cobra.Command{
		Use:   "baseline --root DIR --out FILE",
		Short: "Record the trusted state of a tree in a baseline file",
		Long: `baseline scans --root with the policy and writes the attributes and content
hashes of every entry to --out (atomically: an existing file is replaced only
when the new one is complete; a new file is mode 0600). With --sign-key the
baseline is signed (ed25519, see 'podfim keygen') and check can refuse any
baseline not signed by that key. The header records --subject (what the
baseline is for), the creation time (SOURCE_DATE_EPOCH if set) and --serial,
and the signature covers them: check --subject, --max-age and --min-serial, and
the sidecar's --subject, refuse a baseline made for something else, too old,
or rolled back.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			key, err := signingKey(signKey)
			if err != nil {
				return err
			}
			p, m, err := sf.loadPolicy()
			if err != nil {
				return err
			}
			h, err := newHeader(p, subject, serial)
			if err != nil {
				return err
			}
			// The entries go to the file as the scan emits them: the
			// tree is never held whole.
			w, err := createBaseline(out, key)
			if err != nil {
				return err
			}
			defer w.Abort()
			res, _, err := sf.scanTree(c.Context(), m, storeHooks(w, h))
			if err != nil {
				return err
			}
			printWarnings(s, res)
			return commitBaseline(s, out, w, res)
		},
	}
	sf.register(c)
	c.Flags().StringVar(&out, "out", "", "baseline file to write (required)")
	c.Flags().StringVar(&signKey, "sign-key", "", "private key file (from 'podfim keygen') to sign the baseline with")
	c.Flags().StringVar(&subject, "subject", "", "what the baseline is for (e.g. web/www, or an image digest), recorded and signed; check --subject and the sidecar's --subject require it")
	c.Flags().Uint64Var(&serial, "serial", 0, "serial number, recorded and signed: check --min-serial refuses smaller ones (rollback); 0: the creation time in seconds")
	_ = c.MarkFlagRequired("out")
	return c
}
