package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/baseline"
)

func newKeygenCmd(s *streams) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Create an ed25519 key pair for signing baselines",
		Long: `keygen writes a private key to FILE (mode 0600, PEM PKCS#8) and its public key
to FILE.pub (PEM PKIX). Sign with 'baseline --sign-key FILE'; verify with
'check --verify-key FILE.pub'. Existing files are never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			pub, err := baseline.GenerateKey(out, out+".pub")
			if err != nil {
				return fail(ExitIO, err)
			}
			fmt.Fprintf(s.out, "wrote private key %s and public key %s.pub (key id %s)\n", out, out, baseline.KeyID(pub))
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "private key file to create; the public key goes to FILE.pub (required)")
	_ = c.MarkFlagRequired("out")
	return c
}
