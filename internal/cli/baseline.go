package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/scan"
)

func newBaselineCmd(s *streams) *cobra.Command {
	var (
		sf      scanFlags
		img     imageFlags
		out     string
		signKey string
		subject string
		serial  uint64
	)
	sf.streams = s
	c := &cobra.Command{
		Use:   "baseline (--root DIR | --image REF) --out FILE",
		Short: "Record the trusted state of a tree or a container image in a baseline file",
		Long: `baseline scans --root with the policy and writes the attributes and content
hashes of every entry to --out (atomically: an existing file is replaced only
when the new one is complete; a new file is mode 0600). With --sign-key the
baseline is signed (ed25519, see 'podfim keygen') and check can refuse any
baseline not signed by that key. The header records --subject (what the
baseline is for), the creation time (SOURCE_DATE_EPOCH if set) and --serial,
and the signature covers them: check --subject, --max-age and --min-serial, and
the sidecar's --subject, refuse a baseline made for something else, too old,
or rolled back.

With --image instead of --root, the baseline is made from a container image:
its layers are applied as a container runtime applies them, streamed (nothing
is unpacked), and the baseline records the image's digests and compares only
what an image fixes (see docs/image-baselines.md). The subject defaults to the
manifest digest and the creation time to the image's (SOURCE_DATE_EPOCH still
wins): the same image always gives the same file. REF is one of
  docker://REGISTRY/REPO:TAG or docker://REGISTRY/REPO@DIGEST   a registry
  oci:DIR[:TAG]                                                  an OCI image layout
  oci-archive:FILE[:TAG]                                         an OCI layout in a tar file
  docker-archive:FILE[:REPO:TAG]                                 'docker save' / 'podman save'`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if (sf.root == "") == (img.ref == "") {
				return failf(ExitUsage, "give exactly one of --root and --image")
			}
			if img.ref == "" && img.set(c) {
				return failf(ExitUsage, "--platform, --authfile and --insecure apply to --image only")
			}
			key, err := signingKey(signKey)
			if err != nil {
				return err
			}
			p, m, err := sf.loadPolicy()
			if err != nil {
				return err
			}
			// The entries go to the file as they are produced: the tree
			// (or the image) is never held whole.
			w, err := createBaseline(out, key)
			if err != nil {
				return err
			}
			defer w.Abort()
			var res *scan.Result
			if img.ref != "" {
				res, err = img.baseline(c.Context(), w, p, m, subject, serial)
			} else {
				res, err = sf.baseline(c.Context(), w, p, m, subject, serial)
			}
			if err != nil {
				return err
			}
			printWarnings(s, res)
			return commitBaseline(s, out, w, res)
		},
	}
	sf.registerOptionalRoot(c)
	img.register(c)
	c.Flags().StringVar(&out, "out", "", "baseline file to write (required)")
	c.Flags().StringVar(&signKey, "sign-key", "", "private key file (from 'podfim keygen') to sign the baseline with")
	c.Flags().StringVar(&subject, "subject", "", "what the baseline is for (e.g. web/www, or an image digest), recorded and signed; check --subject and the sidecar's --subject require it")
	c.Flags().Uint64Var(&serial, "serial", 0, "serial number, recorded and signed: check --min-serial refuses smaller ones (rollback); 0: the creation time in seconds")
	_ = c.MarkFlagRequired("out")
	c.AddCommand(newBaselineShowCmd(s), newBaselinePushCmd(s), newBaselinePullCmd(s))
	return c
}

// baseline scans the tree into w.
func (f *scanFlags) baseline(ctx context.Context, w *baseline.Writer, p *policy.Policy, m *policy.Matcher, subject string, serial uint64) (*scan.Result, error) {
	h, err := newHeader(p, subject, serial)
	if err != nil {
		return nil, err
	}
	res, _, err := f.scanTree(ctx, m, storeHooks(w, h))
	return res, err
}
