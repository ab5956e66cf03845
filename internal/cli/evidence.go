package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/evidence"
	"github.com/podfim/podfim/internal/report"
)

// maxListed bounds `evidence list`: the newest records are shown, the
// number left out is said.
const maxListed = evidence.DefaultMaxRecords

func newEvidenceCmd(s *streams) *cobra.Command {
	var stateDir string
	c := &cobra.Command{
		Use:   "evidence",
		Short: "Read, export and verify the evidence a sidecar kept before its responses",
		Long: `The sidecar keeps the new bytes (and a diff) of every changed or added file in
--state-dir/evidence before it restores or kills (docs/drift.md). These commands
read it back, through kubectl exec into the sidecar or a copy of its state
directory. File content and names are hostile: list and show escape them.`,
	}
	c.PersistentFlags().StringVar(&stateDir, "state-dir", "/var/lib/podfim", "the sidecar's state directory (evidence is in its evidence/ subdirectory)")
	dir := func() string { return filepath.Join(stateDir, "evidence") }
	c.AddCommand(newEvidenceListCmd(s, dir), newEvidenceShowCmd(s, dir), newEvidenceExportCmd(s, dir), newEvidenceVerifyCmd(s))
	return c
}

func newEvidenceListCmd(s *streams, dir func() string) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the evidence records, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			recs, more, err := evidence.List(dir(), maxListed)
			if err != nil {
				return fail(ExitIO, err)
			}
			if asJSON {
				return fail(ExitIO, json.NewEncoder(s.out).Encode(recs))
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tRESULT\tTYPE\tSIZE\tPATH\tEXCERPT")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Kind, r.Result, r.Type, r.Size,
					report.Escape(r.Path), evidence.Escape(r.Excerpt, 60))
			}
			if more > 0 {
				fmt.Fprintf(tw, "(%d older records not listed)\n", more)
			}
			return fail(ExitIO, tw.Flush())
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the records as stored (JSON array)")
	return c
}

func newEvidenceShowCmd(s *streams, dir func() string) *cobra.Command {
	var asJSON, content bool
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show one record and its diff; --content writes the kept bytes",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			r, err := evidence.Load(dir(), args[0])
			if err != nil {
				return fail(ExitIO, err)
			}
			switch {
			case content:
				return writeObject(s.out, dir(), r.Object)
			case asJSON:
				enc := json.NewEncoder(s.out)
				enc.SetIndent("", "  ")
				return fail(ExitIO, enc.Encode(r))
			}
			return fail(ExitIO, printRecord(s.out, dir(), r))
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the record as stored")
	c.Flags().BoolVar(&content, "content", false, "write the kept bytes of the file, raw (not to a terminal)")
	return c
}

// printRecord prints r and its diff, every string from the app escaped.
func printRecord(w io.Writer, dir string, r *evidence.Record) error {
	fmt.Fprintf(w, "id:       %s\ntime:     %s\npath:     %s\nkind:     %s\nresult:   %s\n", r.ID, r.Time.Format(time.RFC3339Nano), report.Escape(r.Path), r.Kind, r.Result)
	fmt.Fprintf(w, "type:     %s\nsize:     %d\nsha256:   %s\n", r.Type, r.Size, r.SHA256)
	if r.Truncated {
		fmt.Fprintln(w, "kept:     the first bytes only (truncated)")
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error:    %s\n", report.Escape(r.Error))
	}
	if a := r.Attribution; a != nil {
		fmt.Fprintf(w, "attribution: %s\n", a.Method)
		for _, p := range a.Processes {
			fmt.Fprintf(w, "  pid %d ppid %d uid %d exe %s cmdline %s\n", p.PID, p.PPID, p.UID, report.Escape(p.Exe), p.Cmdline)
		}
		if a.Omitted > 0 {
			fmt.Fprintf(w, "  (%d not looked at: bounds)\n", a.Omitted)
		}
	}
	if r.Diff == "" {
		return nil
	}
	f, err := evidence.OpenObject(dir, r.Diff)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4*evidence.DefaultMaxDiffBytes))
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "diff:")
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", evidence.Escape(line, len(line)))
	}
	return nil
}

// writeObject copies a kept object to w, which must not be a terminal:
// the bytes are the attacker's.
func writeObject(w io.Writer, dir, name string) error {
	if name == "" {
		return failf(ExitIO, "no bytes were kept for this record (see its result)")
	}
	if isTerminal(w) {
		return failf(ExitUsage, "--content writes the attacker's bytes raw: redirect it to a file")
	}
	f, err := evidence.OpenObject(dir, name)
	if err != nil {
		return fail(ExitIO, err)
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return fail(ExitIO, err)
}

func newEvidenceExportCmd(s *streams, dir func() string) *cobra.Command {
	var keyFile, subject, out string
	c := &cobra.Command{
		Use:   "export [--key FILE] [--subject NS/POD] [--out FILE]",
		Short: "Write every record and kept object as a tar with a (signed) manifest",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var key ed25519.PrivateKey
			if keyFile != "" {
				k, err := baseline.LoadPrivateKey(keyFile)
				if err != nil {
					return fail(ExitIO, err)
				}
				key = k
			}
			w := s.out
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return fail(ExitIO, err)
				}
				defer f.Close()
				w = f
			} else if isTerminal(w) {
				return failf(ExitUsage, "export writes a tar: redirect it or use --out")
			}
			m, err := evidence.Export(w, dir(), key, subject, time.Now())
			if err != nil {
				return fail(ExitIO, err)
			}
			fmt.Fprintf(s.errOut, "exported %d files, signed: %t\n", len(m.Files), key != nil)
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "key", "", "private key (podfim keygen) to sign the manifest with; without it the manifest is unsigned")
	c.Flags().StringVar(&subject, "subject", "", "what the evidence is of (e.g. namespace/pod), recorded in the signed manifest")
	c.Flags().StringVar(&out, "out", "", "file to create (never overwritten); default: standard output")
	return c
}

func newEvidenceVerifyCmd(s *streams) *cobra.Command {
	var keyFile string
	c := &cobra.Command{
		Use:   "verify [--key FILE] TAR",
		Short: "Check an export against its manifest (and the manifest's signature with --key)",
		Long: `verify checks that every file of the tar is listed in its manifest with its
size and sha256, that every listed file is there, that each object hashes to its
name, and with --key that the manifest is signed by that key (an unsigned export
is then refused). Exit status 21 when any of it fails. TAR - reads standard input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var pub ed25519.PublicKey
			if keyFile != "" {
				k, err := baseline.LoadPublicKey(keyFile)
				if err != nil {
					return fail(ExitIO, err)
				}
				pub = k
			}
			var r io.Reader = os.Stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fail(ExitIO, err)
				}
				defer f.Close()
				r = f
			}
			m, err := evidence.Verify(r, pub)
			switch {
			case errors.Is(err, evidence.ErrUnsigned), errors.Is(err, evidence.ErrBadSignature), errors.Is(err, evidence.ErrTampered):
				return fail(ExitSignature, err)
			case err != nil:
				return fail(ExitIO, err)
			}
			signed := "not checked (no --key)"
			if pub != nil {
				signed = "signed by key " + baseline.KeyID(pub)
			}
			fmt.Fprintf(s.out, "verified: %d files, exported %s, subject %s, %s\n", len(m.Files), m.Created.Format(time.RFC3339), report.Escape(m.Subject), signed)
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "key", "", "public key (or the private key file) the manifest must be signed by")
	return c
}
