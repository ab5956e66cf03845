package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/referrer"
)

// registryFlags are the flags of a command that talks to a registry.
type registryFlags struct {
	ref       string
	verifyKey string
	opts      referrer.Options
}

func (f *registryFlags) register(c *cobra.Command, verifyUsage string) {
	c.Flags().StringVar(&f.ref, "image", "", "the image, by digest: docker://REGISTRY/REPO@sha256:... (required)")
	c.Flags().StringVar(&f.opts.Authfile, "authfile", "", "registry credentials file (docker config.json or podman auth.json; default: the usual places)")
	c.Flags().BoolVar(&f.opts.Insecure, "insecure", false, "allow plain HTTP to the registry (loopback registries get it anyway)")
	c.Flags().StringVar(&f.verifyKey, "verify-key", "", verifyUsage)
	c.Flags().Int64Var(&f.opts.MaxBaselineBytes, "max-baseline-bytes", referrer.DefaultMaxBaselineBytes, "largest baseline file to read or fetch")
	_ = c.MarkFlagRequired("image")
}

// parse parses --image and loads --verify-key.
func (f *registryFlags) parse() (ref referrerRef, err error) {
	ref.d, err = referrer.ParseDigest(f.ref, f.opts.Insecure)
	if err != nil {
		return ref, fail(ExitUsage, err)
	}
	ref.read, err = baselineOptions(f.verifyKey, baseline.Binding{ImageDigest: ref.d.DigestStr()})
	return ref, err
}

type referrerRef struct {
	d    name.Digest
	read baseline.ReadOptions
}

func newBaselinePushCmd(s *streams) *cobra.Command {
	var f registryFlags
	c := &cobra.Command{
		Use:   "push --image docker://REPO@DIGEST FILE",
		Short: "Attach a signed baseline to its image in the registry (an OCI 1.1 referrer)",
		Long: `push attaches the baseline FILE to the image as an OCI 1.1 referrer: a manifest
of artifactType ` + referrer.ArtifactType + ` whose subject is the image
manifest, holding the file as its one layer. A registry without the referrers
API gets the referrers fallback tag (sha256-<hex>) updated instead.

FILE must be signed (by --verify-key, when given) and record the image named
by --image (made with 'podfim baseline --image'): a baseline no sidecar would
accept for this image is refused before anything is uploaded. A tag is refused:
a baseline is for exactly one image. See docs/image-baselines.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ref, err := f.parse()
			if err != nil {
				return err
			}
			p, err := referrer.Push(c.Context(), ref.d, args[0], ref.read.VerifyKey, f.opts)
			if err != nil {
				return referrerError(err)
			}
			fmt.Fprintf(s.out, "pushed baseline %q (serial %d, key %s) as referrer %s of %s\n",
				args[0], p.Serial, p.KeyID, p.Referrer.DigestStr(), p.Subject.Digest)
			return nil
		},
	}
	f.register(c, "public key file: refuse to push unless FILE is signed by this key")
	return c
}

func newBaselinePullCmd(s *streams) *cobra.Command {
	var (
		f   registryFlags
		out string
	)
	c := &cobra.Command{
		Use:   "pull --image docker://REPO@DIGEST --out FILE",
		Short: "Fetch the baseline attached to an image",
		Long: `pull lists the image's referrers of artifactType ` + referrer.ArtifactType + `,
fetches each (at most 16, each at most --max-baseline-bytes) and writes to
--out the newest that is authentic and records the image: signed by
--verify-key when given (by anyone otherwise, which proves nothing: give the
key), newest by its signed serial, then its signed creation time. The
registry's order and annotations choose nothing. --out is replaced only by a
verified baseline. Without a usable one, pull says why each was refused and
exits with the status of the first kind of refusal (21 signature, 22 another
image) or 18.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ref, err := f.parse()
			if err != nil {
				return err
			}
			if f.verifyKey == "" {
				fmt.Fprintf(s.errOut, "podfim: warning: without --verify-key any signer is accepted\n")
			}
			p, err := referrer.Pull(c.Context(), ref.d, out, ref.read, f.opts)
			if err != nil {
				return referrerError(err)
			}
			if p.Skipped > 0 {
				fmt.Fprintf(s.errOut, "podfim: warning: %d of %d baseline referrers not looked at (limits: %d screened, %d fetched whole)\n", p.Skipped, p.Listed, referrer.DefaultMaxScreened, referrer.DefaultMaxCandidates)
			}
			fmt.Fprintf(s.out, "pulled baseline from referrer %s (serial %d, key %s; %d listed, %d refused) to %q\n",
				p.Referrer, p.Header.Serial, p.KeyID, p.Listed, len(p.Refused), out)
			return nil
		},
	}
	f.register(c, "public key file: use only a baseline signed by this key")
	c.Flags().StringVar(&out, "out", "", "baseline file to write (required)")
	_ = c.MarkFlagRequired("out")
	return c
}

// referrerError maps a failure to push or pull to its exit status.
func referrerError(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return fail(ExitInterrupted, err)
	case errors.Is(err, referrer.ErrReference):
		return fail(ExitUsage, err)
	}
	return baselineReadError(err)
}
