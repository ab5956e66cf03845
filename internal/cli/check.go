package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/report"
	"github.com/podfim/podfim/internal/scan"
)

// checkFlags are the flags shared by check and update.
type checkFlags struct {
	scanFlags
	baseline  string
	verifyKey string
	format    string
	quick     bool
}

func (f *checkFlags) register(c *cobra.Command) {
	f.scanFlags.register(c)
	c.Flags().StringVar(&f.baseline, "baseline", "", "baseline file made by 'podfim baseline' (required)")
	c.Flags().StringVar(&f.verifyKey, "verify-key", "", "public key file: refuse the baseline unless it is signed by this key")
	c.Flags().StringVar(&f.format, "format", "text", "report format: text (for people) or json (for machines)")
	c.Flags().BoolVar(&f.quick, "quick", false, "hash only files whose size, mtime, ctime or inode changed (see docs/design.md for why this is sound)")
	_ = c.MarkFlagRequired("baseline")
}

func (f *checkFlags) validate() error {
	if f.format != "text" && f.format != "json" {
		return failf(ExitUsage, "--format must be text or json, not %q", f.format)
	}
	return nil
}

// checked is the outcome of comparing a tree with its baseline.
type checked struct {
	policy *policy.Policy
	base   storedBaseline
	scan   *scan.Result
	result compare.Result
	report *report.Report
}

// storedBaseline is what a check knows about the baseline file besides its
// entries.
type storedBaseline struct {
	policyDigest string
	digest       [32]byte
	signed       bool
	keyID        string
}

// run reads the baseline, scans the tree and compares them.
//
// A full check streams the baseline: the file is read and authenticated
// (digest, signature) before the scan, and its entries are decoded one at
// a time during the comparison, so that the decoded baseline is never in
// memory whole. A quick check needs it whole, as the scan's Prior.
//
// keep says whether the caller needs the scanned entries (update writes
// them); a plain full check compares them as the scan emits them and
// holds neither the baseline nor the scan whole.
func (f *checkFlags) run(ctx context.Context, s *streams, keep bool) (*checked, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	p, m, err := f.loadPolicy()
	if err != nil {
		return nil, err
	}
	opts, err := baselineOptions(f.verifyKey)
	if err != nil {
		return nil, err
	}
	var (
		base   storedBaseline
		whole  *baseline.Baseline // --quick
		stream *baseline.Reader   // a full check
		prior  scan.Prior
	)
	if f.quick {
		if whole, err = readBaseline(f.baseline, opts); err != nil {
			return nil, err
		}
		base = storedBaseline{whole.PolicyDigest, whole.Digest, whole.Signed, whole.KeyID}
		prior = whole
	} else {
		if stream, err = openBaseline(f.baseline, opts); err != nil {
			return nil, err
		}
		base = storedBaseline{stream.PolicyDigest, stream.Digest, stream.Signed, stream.KeyID}
	}
	if base.policyDigest != p.Digest() {
		fmt.Fprintf(s.errOut, "podfim: warning: the policy differs from the one baseline %s was made with; "+
			"only attributes collected by both are compared, and paths one of them skips show as added or removed\n", f.baseline)
	}
	var merger *compare.Merger
	var emit []func(*attr.Entry)
	if !f.quick && !keep {
		merger = compare.NewMerger(stream.Next, m.Limits().MaxFindings)
		emit = append(emit, merger.Add)
	}
	res, took, err := f.scanTree(ctx, m, prior, emit...)
	if err != nil {
		return nil, err
	}
	var (
		cmp       compare.Result
		baseCount int
	)
	switch {
	case merger != nil:
		// An entry that does not decode fails the whole check: no
		// report, least of all a clean one.
		if cmp, err = merger.Finish(); err != nil {
			return nil, baselineReadError(err)
		}
		baseCount = stream.Decoded()
	case f.quick:
		cmp, baseCount = compare.Entries(whole.Entries, res.Entries, m.Limits().MaxFindings), len(whole.Entries)
	default:
		if cmp, err = compare.Stream(stream.Next, res.Entries, m.Limits().MaxFindings); err != nil {
			return nil, baselineReadError(err)
		}
		baseCount = stream.Decoded()
	}
	sum := report.NewSummary(cmp)
	sum.Root = f.root
	sum.Quick = f.quick
	sum.BaselineEntries = baseCount
	sum.ScannedEntries = int(res.Stats.Entries)
	sum.Hashed, sum.HashedBytes, sum.Reused = res.Stats.Hashed, res.Stats.HashedBytes, res.Stats.Reused
	sum.BaselineDigest = fmt.Sprintf("%x", base.digest)
	sum.Signed, sum.KeyID, sum.Verified = base.signed, base.keyID, base.signed && f.verifyKey != ""
	sum.DurationSeconds = took.Seconds()
	rep := &report.Report{Findings: cmp.Findings, Summary: sum, Warnings: warnings(res)}
	return &checked{policy: p, base: base, scan: res, result: cmp, report: rep}, nil
}

func (f *checkFlags) write(s *streams, rep *report.Report) error {
	var err error
	if f.format == "json" {
		err = report.JSON(s.out, rep)
	} else {
		err = report.Text(s.out, rep)
	}
	return fail(ExitIO, err)
}

func newCheckCmd(s *streams) *cobra.Command {
	var f checkFlags
	c := &cobra.Command{
		Use:   "check --root DIR --baseline FILE",
		Short: "Compare a tree with its baseline and report every difference",
		Long: `check scans --root and compares it with --baseline. It reports files added,
removed and changed (with the attributes that changed) as text or JSON on
standard output.

Exit status: 0 no differences; otherwise the OR of 1 (added), 2 (removed) and
4 (changed). 14 and above are errors: 15 usage, 16 policy, 17 scan, 18 I/O,
19 baseline from a newer podfim, 20 corrupt baseline, 21 signature, 130
interrupted (see docs/cli.md).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			chk, err := f.run(c.Context(), s, false)
			if err != nil {
				return err
			}
			if err := f.write(s, chk.report); err != nil {
				return err
			}
			if code := chk.result.Counts.ExitCode(); code != 0 {
				return checkStatus(code)
			}
			return nil
		},
	}
	f.register(c)
	return c
}
