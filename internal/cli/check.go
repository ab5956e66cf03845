package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

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
	mountinfo string
	quick     bool
	bind      baseline.Binding
	// allowPolicy accepts a --policy other than the baseline's.
	allowPolicy bool
}

func (f *checkFlags) register(c *cobra.Command) {
	f.scanFlags.register(c)
	c.Flags().StringVar(&f.baseline, "baseline", "", "baseline file made by 'podfim baseline' (required)")
	c.Flags().StringVar(&f.verifyKey, "verify-key", "", "public key file: refuse the baseline unless it is signed by this key")
	c.Flags().StringVar(&f.format, "format", "text", "report format: text (for people) or json (for machines)")
	registerMountinfo(c, &f.mountinfo)
	c.Flags().BoolVar(&f.quick, "quick", false, "hash only files whose size, mtime, ctime or inode changed (see docs/design.md for why this is sound)")
	c.Flags().BoolVar(&f.allowPolicy, "allow-policy-change", false, "compare with --policy although the baseline was made with another policy (paths one of them skips show as added or removed); update then records the new policy")
	c.Flags().StringVar(&f.bind.Subject, "subject", "", "refuse the baseline (exit 22) unless it was made for this subject (baseline --subject)")
	c.Flags().DurationVar(&f.bind.MaxAge, "max-age", 0, "refuse the baseline (exit 22) if it was created longer ago than this (e.g. 168h); 0: any age")
	c.Flags().Uint64Var(&f.bind.MinSerial, "min-serial", 0, "refuse the baseline (exit 22) if its serial is smaller (a rollback to an older baseline)")
	_ = c.MarkFlagRequired("baseline")
}

func (f *checkFlags) validate() error {
	if f.format != "text" && f.format != "json" {
		return failf(ExitUsage, "--format must be text or json, not %q", f.format)
	}
	if f.bind.MaxAge < 0 {
		return failf(ExitUsage, "--max-age must not be negative, not %s", f.bind.MaxAge)
	}
	return nil
}

// checked is the outcome of comparing a tree with its baseline.
type checked struct {
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

// opened is a check that has its policy and an authenticated baseline, and
// has not scanned yet.
type opened struct {
	policy  *policy.Policy
	matcher *policy.Matcher
	stream  *baseline.Reader
	base    storedBaseline
	next    baseline.Header // the header of an update's new baseline
}

// open opens the baseline and decides the policy: the file is read and
// authenticated (digest, signature, binding) before anything else is done
// with it. The caller closes o.stream.
func (f *checkFlags) open(s *streams) (*opened, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	var given *policy.Policy
	if f.policy != "" {
		p, err := policy.Load(f.policy)
		if err != nil {
			return nil, fail(ExitPolicy, err)
		}
		given = p
	}
	if b := f.bind; f.verifyKey == "" && (b.Subject != "" || b.MaxAge != 0 || b.MinSerial != 0) {
		fmt.Fprintf(s.errOut, "podfim: warning: --subject, --max-age and --min-serial only guard against mistakes without --verify-key: anyone can write an unsigned baseline with any header\n")
	}
	opts, err := baselineOptions(f.verifyKey, f.bind)
	if err != nil {
		return nil, err
	}
	stream, err := openBaseline(f.baseline, opts)
	if err != nil {
		return nil, err
	}
	p, m, err := f.choosePolicy(s, stream, given)
	if err == nil && stream.Count > m.Limits().MaxFiles {
		// No scan under this policy records that many: the file was made
		// for another policy, or to exhaust whoever reads it (3M entries
		// fit in 150 KB).
		err = failf(ExitCorrupt, "baseline %s holds %d entries, more than the policy's limits.maxFiles (%d)", f.baseline, stream.Count, m.Limits().MaxFiles)
	}
	if err != nil {
		stream.Close()
		return nil, err
	}
	base := storedBaseline{stream.PolicyDigest, stream.Digest, stream.Signed, stream.KeyID}
	return &opened{policy: p, matcher: m, stream: stream, base: base}, nil
}

// choosePolicy returns the policy to compare with (issue 11 item 8): the
// one stored in the baseline unless --policy names one; one whose digest
// differs from the baseline's is an error, unless --allow-policy-change,
// since every path one policy skips and the other records would be
// reported as added or removed.
func (f *checkFlags) choosePolicy(s *streams, r *baseline.Reader, given *policy.Policy) (*policy.Policy, *policy.Matcher, error) {
	if given == nil && r.Policy != nil {
		p, err := policy.Parse(r.Policy)
		switch {
		case err != nil:
			return nil, nil, failf(ExitCorrupt, "baseline %s: its stored policy is invalid: %w", f.baseline, err)
		case p.Digest() != r.PolicyDigest:
			return nil, nil, failf(ExitCorrupt, "baseline %s: its stored policy has digest %s, the header says %s", f.baseline, p.Digest(), r.PolicyDigest)
		}
		return compilePolicy(p)
	}
	p, what := given, "--policy "+f.policy
	if p == nil {
		// A baseline that does not store its policy (format 1).
		p, what = policy.Default(), "the built-in policy"
	}
	if d := p.Digest(); d != r.PolicyDigest {
		if !f.allowPolicy {
			return nil, nil, failf(ExitPolicy, "%s (digest %s) is not the policy baseline %s was made with (digest %s): "+
				"paths one of them skips would show as added or removed; pass the baseline's policy, or --allow-policy-change to compare anyway",
				what, orNone(d), f.baseline, orNone(r.PolicyDigest))
		}
		fmt.Fprintf(s.errOut, "podfim: warning: %s (digest %s) is not the policy baseline %s was made with (digest %s); "+
			"only attributes collected by both are compared, and paths one of them skips show as added or removed\n",
			what, orNone(d), f.baseline, orNone(r.PolicyDigest))
	}
	return compilePolicy(p)
}

// orNone names an empty digest in a message.
func orNone(d string) string {
	if d == "" {
		return "none"
	}
	return d
}

// compare scans the tree and compares it with the baseline; with out, the
// scanned entries are also stored there (update).
//
// Neither the baseline nor the scan is held whole: the scan emits its
// entries in path order into a compare.Merger that pulls the baseline's
// entries one at a time from the file (and into out). A quick check reads
// the baseline a second time at once, through a baseline.QuickCursor that
// answers the scan's questions in path order as the walk asks them.
func (f *checkFlags) compare(ctx context.Context, o *opened, out *baseline.Writer) (*checked, error) {
	mounts, err := f.mounts()
	if err != nil {
		return nil, err
	}
	var hooks scanHooks
	if out != nil {
		hooks = storeHooks(out, o.next)
	}
	var cursor *baseline.QuickCursor
	if f.quick {
		fork, err := o.stream.Fork()
		if err != nil {
			return nil, baselineReadError(err)
		}
		cursor = baseline.NewQuickCursor(fork)
		hooks.quick = cursor
	}
	if o.matcher.Collects(attr.Growing) {
		idx, err := readGrowing(o.stream)
		if err != nil {
			return nil, baselineReadError(err)
		}
		hooks.growing = idx
	}
	merger := compare.NewMerger(o.stream.Next, o.matcher.Limits().MaxFindings)
	// A baseline made from an image says which attributes a container
	// unpacked from it can match at all (inode, nlink and ctime cannot).
	merger.Only(o.stream.Compared)
	// Where each finding comes from, and what is the runtime's own.
	merger.Origins(classifier(o.stream, mounts))
	if store := hooks.emit; store != nil {
		hooks.emit = func(e *attr.Entry) {
			merger.Add(e)
			store(e)
		}
	} else {
		hooks.emit = merger.Add
	}
	res, took, err := f.scanTree(ctx, o.matcher, hooks)
	if err != nil {
		return nil, err
	}
	// The hashes the cursor gave were read before its digest was checked:
	// a baseline that does not read to its end fails the whole check.
	if cursor != nil {
		if err := cursor.Finish(); err != nil {
			return nil, baselineReadError(err)
		}
	}
	// An entry that does not decode, or a file that changed since it
	// was authenticated, fails the whole check: no report, least of all
	// a clean one.
	cmp, err := merger.Finish()
	if err != nil {
		return nil, baselineReadError(err)
	}
	sum := report.NewSummary(cmp)
	sum.Root = f.root
	sum.Quick = f.quick
	sum.BaselineEntries = o.stream.Decoded()
	sum.ScannedEntries = int(res.Stats.Entries)
	sum.Hashed, sum.HashedBytes, sum.Reused = res.Stats.Hashed, res.Stats.HashedBytes, res.Stats.Reused
	sum.PseudoSkipped = res.Stats.Pseudo
	sum.BaselineDigest = fmt.Sprintf("%x", o.base.digest)
	sum.Signed, sum.KeyID, sum.Verified = o.base.signed, o.base.keyID, o.base.signed && f.verifyKey != ""
	sum.DurationSeconds = took.Seconds()
	for _, w := range res.Warnings {
		if w.Incomplete() {
			sum.Incomplete++
		}
	}
	// Never 0 unless the whole tree was compared; differences found say
	// more than the incompleteness, which the report states either way.
	if sum.ExitCode == ExitOK && sum.Incomplete > 0 {
		sum.ExitCode = ExitIncomplete
	}
	rep := &report.Report{Findings: cmp.Findings, Summary: sum, Warnings: warnings(res)}
	return &checked{scan: res, result: cmp, report: rep}, nil
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
	f.streams = s
	c := &cobra.Command{
		Use:   "check --root DIR --baseline FILE",
		Short: "Compare a tree with its baseline and report every difference",
		Long: `check scans --root and compares it with --baseline. It reports files added,
removed and changed (with the attributes that changed) as text or JSON on
standard output.

Exit status: 0 no differences in the whole tree; otherwise the OR of 1
(added), 2 (removed) and 4 (changed); 8 no differences, but part of the tree
could not be compared (limits, unreadable files: see the warnings). 14 and
above are errors: 15 usage, 16 policy, 17 scan, 18 I/O,
19 baseline from a newer podfim, 20 corrupt baseline, 21 signature, 22
baseline for another subject, older than --max-age or below --min-serial, 130
interrupted (see docs/cli.md).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o, err := f.open(s)
			if err != nil {
				return err
			}
			defer o.stream.Close()
			chk, err := f.compare(c.Context(), o, nil)
			if err != nil {
				return err
			}
			if err := f.write(s, chk.report); err != nil {
				return err
			}
			if code := chk.report.Summary.ExitCode; code != ExitOK {
				return checkStatus(code)
			}
			return nil
		},
	}
	f.register(c)
	return c
}

// growingIndex holds what append-only checking needs of a baseline's
// Growing files (scan.Options.Growing): path, attributes, type, size, hash.
type growingIndex map[string]*attr.Entry

func (g growingIndex) Lookup(p string) (*attr.Entry, bool) { e, ok := g[p]; return e, ok }

// readGrowing reads the baseline once for its Growing regular files and
// rewinds it for the comparison. Only they are kept: a baseline holds at
// most limits.maxFiles entries, and logs are few among them.
func readGrowing(r *baseline.Reader) (growingIndex, error) {
	idx := growingIndex{}
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if e.Attrs.Has(attr.Growing) && e.Type == attr.TypeRegular && len(e.Hash) > 0 {
			p := strings.Clone(e.Path)
			idx[p] = &attr.Entry{Path: p, Attrs: e.Attrs, Type: e.Type, Size: e.Size, Hash: bytes.Clone(e.Hash)}
		}
	}
	return idx, r.Rewind()
}
