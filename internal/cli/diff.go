package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/report"
)

func newDiffCmd(s *streams) *cobra.Command {
	var (
		format    string
		verifyKey string
	)
	c := &cobra.Command{
		Use:   "diff A.pfb B.pfb",
		Short: "Report what changed between two baselines (e.g. two releases of an image)",
		Long: `diff compares baseline B with baseline A as check compares a tree with its
baseline: entries in B only are added, in A only removed, in both with other
attributes changed. Both are authenticated first (with --verify-key both must
be signed by that key), then read entry by entry, never held whole. Only
attributes both baselines collected are compared, and of those only what both
compare (an image baseline compares no inode, link count or ctime).

Exit status as check: 0 no differences; otherwise the OR of 1 (added),
2 (removed) and 4 (changed); 15 usage, 18 I/O, 19 newer format, 20 corrupt,
21 signature.`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return failf(ExitUsage, "--format must be text or json, not %q", format)
			}
			rep, err := diffBaselines(args[0], args[1], verifyKey)
			if err != nil {
				return err
			}
			if format == "json" {
				err = report.JSON(s.out, rep)
			} else {
				err = report.Text(s.out, rep)
			}
			if err != nil {
				return fail(ExitIO, err)
			}
			if code := rep.Summary.ExitCode; code != 0 {
				return checkStatus(code)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "text", "report format: text (for people) or json (for machines)")
	c.Flags().StringVar(&verifyKey, "verify-key", "", "public key file: refuse either baseline unless it is signed by this key")
	return c
}

// diffBaselines compares the entries of the baseline files a and b.
func diffBaselines(a, b, verifyKey string) (*report.Report, error) {
	opts, err := baselineOptions(verifyKey, baseline.Binding{})
	if err != nil {
		return nil, err
	}
	ra, err := openBaseline(a, opts)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	rb, err := openBaseline(b, opts)
	if err != nil {
		return nil, err
	}
	defer rb.Close()
	merger := compare.NewMerger(ra.Next, policy.DefaultLimits().MaxFindings)
	merger.Only(diffOnly(ra.Compared, rb.Compared))
	for {
		e, err := rb.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, baselineReadError(err)
		}
		merger.Add(e)
	}
	cmp, err := merger.Finish()
	if err != nil {
		return nil, baselineReadError(err)
	}
	sum := report.NewSummary(cmp)
	sum.Root, sum.BaselineEntries = a, ra.Decoded()
	sum.BaselineDigest = fmt.Sprintf("%x", ra.Digest)
	sum.Signed, sum.KeyID, sum.Verified = ra.Signed, ra.KeyID, ra.Signed && verifyKey != ""
	sum.ScannedEntries = rb.Decoded()
	sum.Against = &report.Baseline{File: b, Entries: rb.Decoded(), Digest: fmt.Sprintf("%x", rb.Digest),
		Signed: rb.Signed, KeyID: rb.KeyID, Verified: rb.Signed && verifyKey != ""}
	return &report.Report{Findings: cmp.Findings, Summary: sum}, nil
}

// diffOnly is what a diff compares: what both baselines compare (0 for
// one is everything).
func diffOnly(a, b attr.Set) attr.Set {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return a & b
}
