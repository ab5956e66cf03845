package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/report"
)

func newBaselineShowCmd(s *streams) *cobra.Command {
	var (
		format    string
		entries   bool
		verifyKey string
	)
	c := &cobra.Command{
		Use:   "show FILE",
		Short: "Print what a baseline file says about itself (and, with --entries, every entry)",
		Long: `show authenticates FILE as check does (digest, and signature when it is signed
or --verify-key is given) and prints its header: format version, digest, signer
key id, subject, creation time, serial, policy digest, compared attributes,
image digests and layers, and the entry count. With --entries it prints every
entry too, one per line in text (strings from the tree quoted when they are not
plainly printable), or in an "entries" array in JSON. It exits as check does
on a baseline it cannot read (19, 20, 21).`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return failf(ExitUsage, "--format must be text or json, not %q", format)
			}
			opts, err := baselineOptions(verifyKey, baseline.Binding{})
			if err != nil {
				return err
			}
			r, err := openBaseline(args[0], opts)
			if err != nil {
				return err
			}
			defer r.Close()
			w := bufio.NewWriterSize(s.out, 64<<10)
			sh := shown{file: args[0], r: r, verified: verifyKey != "", entries: entries}
			if format == "json" {
				err = sh.json(w)
			} else {
				err = sh.text(w)
			}
			if err != nil {
				return err
			}
			return fail(ExitIO, w.Flush())
		},
	}
	c.Flags().StringVar(&format, "format", "text", "text (for people) or json (for machines)")
	c.Flags().BoolVar(&entries, "entries", false, "print every entry too")
	c.Flags().StringVar(&verifyKey, "verify-key", "", "public key file: refuse the baseline unless it is signed by this key")
	return c
}

// shown is a baseline being shown.
type shown struct {
	file     string
	r        *baseline.Reader
	verified bool
	entries  bool
}

// showHeader is the JSON form of what a baseline says about itself.
type showHeader struct {
	File         string     `json:"file"`
	Version      int        `json:"version"`
	Digest       string     `json:"digest"`
	Signed       bool       `json:"signed"`
	KeyID        string     `json:"key_id,omitempty"`
	Verified     bool       `json:"signature_verified"`
	Subject      string     `json:"subject"`
	Created      string     `json:"created,omitempty"`
	Serial       uint64     `json:"serial"`
	PolicyDigest string     `json:"policy_digest"`
	PolicyStored bool       `json:"policy_stored"`
	Compared     []string   `json:"compared,omitempty"`
	Image        *showImage `json:"image,omitempty"`
	EntryCount   int        `json:"entry_count"`
}

type showImage struct {
	Manifest string   `json:"manifest"`
	Config   string   `json:"config"`
	Index    string   `json:"index,omitempty"`
	Platform string   `json:"platform,omitempty"`
	Layers   []string `json:"layers"`
}

func (sh *shown) header() showHeader {
	r := sh.r
	h := showHeader{File: sh.file, Version: r.Version, Digest: fmt.Sprintf("sha256:%x", r.Digest), Signed: r.Signed,
		KeyID: r.KeyID, Verified: r.Signed && sh.verified, Subject: r.Subject, Serial: r.Serial,
		PolicyDigest: r.PolicyDigest, PolicyStored: r.Policy != nil, EntryCount: r.Count}
	if !r.Created.IsZero() {
		h.Created = r.Created.Format(time.RFC3339Nano)
	}
	if r.Compared != 0 {
		h.Compared = r.Compared.Names()
	}
	if im := r.Image; im != nil {
		h.Image = &showImage{Manifest: im.Manifest, Config: im.Config, Index: im.Index, Platform: im.Platform, Layers: im.Layers}
		if h.Image.Layers == nil {
			h.Image.Layers = []string{}
		}
	}
	return h
}

func (sh *shown) text(w io.Writer) error {
	h := sh.header()
	sig := "unsigned"
	switch {
	case h.Verified:
		sig = "signed by " + h.KeyID + ", signature verified"
	case h.Signed:
		sig = "signed by " + h.KeyID + ", signature valid for that key, which was not checked (no --verify-key)"
	}
	orNot := func(s, none string) string {
		if s == "" {
			return none
		}
		return s
	}
	serial := "(none)"
	if h.Serial != 0 {
		serial = fmt.Sprint(h.Serial)
	}
	stored := "not stored"
	if h.PolicyStored {
		stored = "stored"
	}
	compared := "every attribute collected"
	if h.Compared != nil {
		compared = strings.Join(h.Compared, ", ")
	}
	// The subject is printable UTF-8 (the format refuses anything else),
	// but quoting it shows where it ends.
	fmt.Fprintf(w, "baseline %s\n", report.Escape(h.File))
	lines := [][2]string{
		{"format version", fmt.Sprint(h.Version)},
		{"digest", h.Digest},
		{"signature", sig},
		{"subject", orNot(quoteSubject(h.Subject), "(none)")},
		{"created", orNot(h.Created, "(not recorded)")},
		{"serial", serial},
		{"policy digest", orNot(h.PolicyDigest, "(none)") + " (" + stored + ")"},
		{"compared", compared},
	}
	if im := h.Image; im != nil {
		lines = append(lines, [][2]string{
			{"image manifest", im.Manifest}, {"image config", im.Config},
			{"image index", orNot(im.Index, "(single platform)")}, {"platform", orNot(im.Platform, "(unknown)")},
			{"layers", fmt.Sprint(len(im.Layers))},
		}...)
		for i, l := range im.Layers {
			lines = append(lines, [2]string{fmt.Sprintf("  layer %d", i+1), l})
		}
	}
	lines = append(lines, [2]string{"entries", fmt.Sprint(h.EntryCount)})
	for _, l := range lines {
		fmt.Fprintf(w, "  %-16s %s\n", l[0], l[1])
	}
	if !sh.entries {
		return nil
	}
	fmt.Fprintln(w)
	return sh.each(func(e *attr.Entry) error {
		_, err := fmt.Fprintf(w, "%s\n", report.EntryText(e))
		return err
	})
}

func quoteSubject(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("%q", s)
}

// json writes the header as one JSON object; with --entries, an "entries"
// array streamed one entry at a time, so that no baseline is held whole.
func (sh *shown) json(w io.Writer) error {
	b, err := json.MarshalIndent(sh.header(), "", "  ")
	if err != nil {
		return fail(ExitError, err)
	}
	if !sh.entries {
		_, err := fmt.Fprintf(w, "%s\n", b)
		return fail(ExitIO, err)
	}
	// Reopen the object to add the array: b ends with "\n}".
	fmt.Fprintf(w, "%s,\n  \"entries\": [", b[:len(b)-2])
	first := true
	err = sh.each(func(e *attr.Entry) error {
		line, err := json.Marshal(report.EntryJSON(e))
		if err != nil {
			return fail(ExitError, err)
		}
		sep := ","
		if first {
			sep, first = "", false
		}
		_, err = fmt.Fprintf(w, "%s\n    %s", sep, line)
		return err
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "\n  ]\n}\n")
	return fail(ExitIO, err)
}

// each calls f for every entry, in order. A baseline that turns out to be
// corrupt part way fails the command (exit 20) after what was printed.
func (sh *shown) each(f func(*attr.Entry) error) error {
	for {
		e, err := sh.r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return baselineReadError(err)
		}
		if err := f(e); err != nil {
			return fail(ExitIO, err)
		}
	}
}
