package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/report"
	"github.com/podfim/podfim/internal/scan"
)

// scanFlags are the flags of every command that scans a tree.
type scanFlags struct {
	root    string
	policy  string
	workers int
	streams *streams // where a scan shows its progress (nil: nowhere)
}

func (f *scanFlags) register(c *cobra.Command) {
	f.registerOptionalRoot(c)
	_ = c.MarkFlagRequired("root")
}

// registerOptionalRoot registers the flags without making --root required
// (baseline takes --image instead).
func (f *scanFlags) registerOptionalRoot(c *cobra.Command) {
	c.Flags().StringVar(&f.root, "root", "", "directory tree to scan (required); paths are reported relative to it")
	c.Flags().StringVar(&f.policy, "policy", "", "policy file (YAML); default: the built-in policy for container images (see docs/policy.md)")
	c.Flags().IntVar(&f.workers, "workers", 0, "files hashed in parallel; 0 means one per CPU")
}

// loadPolicy returns the policy named by --policy, or the built-in default.
func (f *scanFlags) loadPolicy() (*policy.Policy, *policy.Matcher, error) {
	p := policy.Default()
	if f.policy != "" {
		var err error
		if p, err = policy.Load(f.policy); err != nil {
			return nil, nil, fail(ExitPolicy, err)
		}
	}
	return compilePolicy(p)
}

func compilePolicy(p *policy.Policy) (*policy.Policy, *policy.Matcher, error) {
	m, err := p.Compile()
	if err != nil {
		return nil, nil, fail(ExitPolicy, err)
	}
	return p, m, nil
}

// scanHooks are what a command gives a scan beyond the policy: a quick
// scan's index of the baseline, and where the entries go when they are
// not collected.
type scanHooks struct {
	quick   scan.QuickHashes  // nil: a full scan
	growing scan.Prior        // the baseline's Growing files, to check they were only appended to
	emit    func(*attr.Entry) // nil: collect the entries in the result
}

// scanTree scans the root with the policy's matcher and limits.
func (f *scanFlags) scanTree(ctx context.Context, m *policy.Matcher, h scanHooks) (*scan.Result, time.Duration, error) {
	if f.workers < 0 {
		return nil, 0, failf(ExitUsage, "--workers must be 0 or more, not %d", f.workers)
	}
	l := m.Limits()
	start := time.Now()
	opts := scan.Options{
		Matcher:      m,
		Workers:      f.workers,
		MaxFiles:     l.MaxFiles,
		MaxDepth:     l.MaxDepth,
		MaxFileBytes: l.MaxFileBytes,
		QuickHashes:  h.quick,
		Growing:      h.growing,
		GrowingFull:  true, // the report shows the new hash; update stores it
		Emit:         h.emit,
		Progress:     new(scan.Progress),
	}
	var shown *progress
	if f.streams != nil {
		shown = startProgress(f.streams.errOut, opts.Progress, f.streams.progressAfter)
	}
	res, err := scan.Tree(ctx, f.root, opts)
	shown.Stop()
	if err != nil {
		return nil, 0, scanError(fmt.Errorf("failed to scan %q: %w", f.root, err))
	}
	return res, time.Since(start), nil
}

func warnings(res *scan.Result) []report.Warning {
	out := make([]report.Warning, 0, len(res.Warnings))
	for _, w := range res.Warnings {
		msg := ""
		if w.Err != nil {
			msg = w.Err.Error()
		}
		out = append(out, report.Warning{Path: w.Path, Op: w.Op, Error: msg})
	}
	return out
}

// baselineOptions returns the options to read a baseline with: verifyKey
// is a public key file or "", bind what the baseline must be for.
func baselineOptions(verifyKey string, bind baseline.Binding) (baseline.ReadOptions, error) {
	opts := baseline.ReadOptions{Binding: bind}
	if verifyKey != "" {
		pub, err := baseline.LoadPublicKey(verifyKey)
		if err != nil {
			return opts, fail(ExitIO, err)
		}
		opts.VerifyKey = pub
	}
	return opts, nil
}

// openBaseline reads and verifies a baseline file, and leaves its entries
// to be decoded one at a time.
func openBaseline(path string, opts baseline.ReadOptions) (*baseline.Reader, error) {
	r, err := baseline.OpenFile(path, opts)
	if err != nil {
		return nil, baselineReadError(err)
	}
	return r, nil
}

// signingKey loads the private key named by a --sign-key flag, or nil.
func signingKey(path string) (ed25519.PrivateKey, error) {
	if path == "" {
		return nil, nil
	}
	k, err := baseline.LoadPrivateKey(path)
	if err != nil {
		return nil, fail(ExitIO, err)
	}
	return k, nil
}

// createBaseline starts a new baseline file at path (see
// baseline.CreateFile): before the scan, so that a directory that cannot
// be written fails before the work is done.
func createBaseline(path string, key ed25519.PrivateKey) (*baseline.Writer, error) {
	w, err := baseline.CreateFile(path, key)
	return w, fail(ExitIO, err)
}

// storeHooks starts w under the header h and returns scan hooks that
// stream the entries into it as the scan emits them (their number is
// known at the end only: see baseline.Writer.BeginUncounted). A failure is
// kept by w and returned by Close.
func storeHooks(w *baseline.Writer, h baseline.Header) scanHooks {
	_ = w.BeginUncounted(h)
	return scanHooks{emit: func(e *attr.Entry) { _ = w.Add(e) }}
}

// newHeader returns the header of a baseline made now with the policy p,
// for subject, with serial (0: the creation time in seconds, so that a
// later baseline has a larger serial without any state to keep).
//
// The creation time is SOURCE_DATE_EPOCH when it is set (the
// reproducible-builds convention): with it the same tree gives the same
// file, byte for byte.
func newHeader(p *policy.Policy, subject string, serial uint64) (baseline.Header, error) {
	return newHeaderAt(p, subject, serial, time.Now())
}

// newHeaderAt is newHeader recording created (the zero time: none) unless
// SOURCE_DATE_EPOCH is set: an image baseline records the image's time, so
// that the same image gives the same file.
func newHeaderAt(p *policy.Policy, subject string, serial uint64, created time.Time) (baseline.Header, error) {
	if !created.IsZero() {
		created = created.UTC().Truncate(time.Second)
	}
	if env := os.Getenv("SOURCE_DATE_EPOCH"); env != "" {
		sec, err := strconv.ParseInt(env, 10, 64)
		if err != nil || sec <= 0 {
			return baseline.Header{}, failf(ExitUsage, "SOURCE_DATE_EPOCH=%q is not a positive number of seconds", env)
		}
		created = time.Unix(sec, 0).UTC()
	}
	if serial == 0 && !created.IsZero() {
		serial = uint64(created.Unix())
	}
	doc, err := json.Marshal(p)
	if err != nil {
		return baseline.Header{}, fail(ExitPolicy, fmt.Errorf("failed to encode the policy: %w", err))
	}
	// The policy goes with the entries, so that check and update compare
	// with the policy the baseline was made with, not whatever they are
	// given (issue 11 item 8).
	h := baseline.Header{Subject: subject, Created: created, Serial: serial, PolicyDigest: p.Digest(), Policy: doc}
	if len(doc) > baseline.MaxPolicyBytes {
		return h, failf(ExitPolicy, "the policy is %d bytes as JSON, more than a baseline holds (%d)", len(doc), baseline.MaxPolicyBytes)
	}
	if err := h.Validate(); err != nil {
		return h, fail(ExitUsage, err)
	}
	return h, nil
}

// commitBaseline puts the baseline w wrote in place and says so on out.
func commitBaseline(s *streams, path string, w *baseline.Writer, res *scan.Result) error {
	if err := w.Close(); err != nil {
		return fail(ExitIO, err)
	}
	// Every entry was validated as it was added (Read accepts what the
	// Writer writes), and the digest is the one every check will show.
	sig := "unsigned"
	if w.Signed {
		sig = "signed by " + w.KeyID
	}
	fmt.Fprintf(s.out, "wrote baseline %s: %d entries, %d hashed, digest sha256:%x, %s\n",
		path, w.Count(), res.Stats.Hashed+res.Stats.Reused, w.Digest, sig)
	return nil
}

func printWarnings(s *streams, res *scan.Result) {
	for _, w := range warnings(res) {
		fmt.Fprintf(s.errOut, "podfim: warning: %q: %s: %s\n", w.Path, report.Escape(w.Op), report.Escape(w.Error))
	}
}
