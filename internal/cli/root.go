// Package cli holds podfim's commands, one file each. A command validates its
// flags, then drives the stages of the data flow (policy, scan, baseline,
// compare, report); it holds no logic of its own beyond that wiring.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

// streams are where a command writes: out for results, errOut for errors
// and progress.
type streams struct {
	out, errOut io.Writer
	// progressAfter is how long a scan runs before it shows its progress
	// on errOut (when that is a terminal; see progress.go).
	progressAfter time.Duration
}

// New returns the root command.
func New(out, errOut io.Writer) *cobra.Command {
	return newRoot(&streams{out: out, errOut: errOut, progressAfter: progressAfter})
}

// newRoot returns the root command writing to s.
func newRoot(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "podfim",
		Short: "File integrity monitoring for directory trees, container images and Kubernetes pods",
		Long: `podfim records the attributes and content hashes of a file tree in a baseline,
then reports every file added, removed or changed since.

Exit status of check: 0 no differences; otherwise 1 added | 2 removed | 4 changed
(ORed). Errors: 14 internal, 15 usage, 16 policy, 17 scan, 18 I/O, 19 baseline
version, 20 corrupt baseline, 21 signature, 22 baseline for something else (or
too old, or rolled back), 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(s.out)
	root.SetErr(s.errOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fail(ExitUsage, fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	root.AddCommand(
		newAgentCmd(s),
		newBaselineCmd(s),
		newCheckCmd(s),
		newDiffCmd(s),
		newEvidenceCmd(s),
		newUpdateCmd(s),
		newKeygenCmd(s),
		newProbeCmd(s),
		newSidecarCmd(s),
		newVersionCmd(s),
		newWebhookCmd(s),
	)
	return root
}

// Run runs podfim with args and returns the process exit status. Errors are
// printed on errOut; check's differences are not errors.
func Run(ctx context.Context, args []string, out, errOut io.Writer) int {
	return runStreams(ctx, args, &streams{out: out, errOut: errOut, progressAfter: progressAfter})
}

// runStreams is Run with the streams given whole (tests set progressAfter).
func runStreams(ctx context.Context, args []string, s *streams) int {
	errOut := s.errOut
	root := newRoot(s)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var st checkStatus
	if errors.As(err, &st) {
		return int(st)
	}
	if err != nil {
		fmt.Fprintf(errOut, "podfim: %v\n", err)
	}
	return ExitCode(err)
}
