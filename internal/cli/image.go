package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/image"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/scan"
)

// imageFlags are the flags of a command that reads a container image.
type imageFlags struct {
	ref  string
	opts image.SourceOptions
}

func (f *imageFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.ref, "image", "", "container image to make the baseline from (docker://, oci:, oci-archive:, docker-archive:; see docs/image-baselines.md)")
	c.Flags().StringVar(&f.opts.Platform, "platform", "", "with --image: the platform to pick from a multi-platform image, os/arch[/variant] (default linux and the architecture podfim runs on)")
	c.Flags().StringVar(&f.opts.Authfile, "authfile", "", "with --image: registry credentials file (docker config.json or podman auth.json; default: the usual places)")
	c.Flags().BoolVar(&f.opts.Insecure, "insecure", false, "with --image: allow plain HTTP to the registry")
}

// set reports whether any flag other than --image was given.
func (f *imageFlags) set(c *cobra.Command) bool {
	fl := c.Flags()
	return fl.Changed("platform") || fl.Changed("authfile") || fl.Changed("insecure")
}

// baseline reads the image and streams its entries into w with the policy.
func (f *imageFlags) baseline(ctx context.Context, w *baseline.Writer, p *policy.Policy, m *policy.Matcher, subject string, serial uint64) (*scan.Result, error) {
	im, err := image.Open(ctx, f.ref, f.opts)
	if err != nil {
		return nil, imageError(err)
	}
	defer im.Close()
	l := m.Limits()
	t := image.NewTree(m, image.Limits{MaxFiles: l.MaxFiles, MaxDepth: l.MaxDepth, MaxFileBytes: l.MaxFileBytes})
	if err := im.Apply(ctx, t); err != nil {
		return nil, imageError(fmt.Errorf("failed to read image %q: %w", f.ref, err))
	}
	if subject == "" {
		subject = im.Manifest
	}
	h, err := newHeaderAt(p, subject, serial, im.Created)
	if err != nil {
		return nil, err
	}
	h.Compared, h.Image = attr.ImageStable, im.Record()
	t.Entries(func(n int) { _ = w.Begin(h, n) }, func(e *attr.Entry) { _ = w.Add(e) })
	return &scan.Result{Warnings: t.Warnings(), Stats: t.Stats()}, nil
}

// imageError maps a failure to read an image to its exit status: a
// reference that names no image is a usage error, anything else (the
// registry, a digest mismatch, an unsafe layer, a limit) fails like a scan.
func imageError(err error) error {
	if errors.Is(err, image.ErrReference) {
		return fail(ExitUsage, err)
	}
	return scanError(err)
}
