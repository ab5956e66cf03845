package report

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
)

// Text writes the report for people: a header, the findings grouped by kind
// with aligned columns, the old and new value of every changed attribute,
// the warnings, and a summary line.
func Text(w io.Writer, r *Report) error {
	var b bytes.Buffer
	s := r.Summary
	mode := "full"
	if s.Quick {
		mode = "quick"
	}
	if a := s.Against; a != nil {
		fmt.Fprintf(&b, "podfim diff of baseline %s against %s\n", quote(s.Root), quote(a.File))
		fmt.Fprintf(&b, "baseline: %d entries, digest sha256:%s, %s\n", s.BaselineEntries, s.BaselineDigest, signature(s.Signed, s.Verified, s.KeyID))
		fmt.Fprintf(&b, "against:  %d entries, digest sha256:%s, %s\n", a.Entries, a.Digest, signature(a.Signed, a.Verified, a.KeyID))
	} else {
		fmt.Fprintf(&b, "podfim %s check of %s\n", mode, quote(s.Root))
		fmt.Fprintf(&b, "baseline: %d entries, digest sha256:%s, %s\n", s.BaselineEntries, s.BaselineDigest, signature(s.Signed, s.Verified, s.KeyID))
		fmt.Fprintf(&b, "scanned:  %d entries, %d hashed (%s), %d hashes reused, %.2fs\n",
			s.ScannedEntries, s.Hashed, bytesHuman(s.HashedBytes), s.Reused, s.DurationSeconds)
		if s.PseudoSkipped > 0 {
			fmt.Fprintf(&b, "skipped:  %d pseudo file system mounts (procfs, sysfs...: a rule must name one to scan it)\n", s.PseudoSkipped)
		}
	}

	for _, kind := range []compare.Kind{compare.Added, compare.Removed, compare.Changed} {
		var group []compare.Finding
		for _, f := range r.Findings {
			if f.Kind == kind {
				group = append(group, f)
			}
		}
		if len(group) == 0 {
			continue
		}
		title := strings.ToUpper(string(kind[:1])) + string(kind[1:])
		fmt.Fprintf(&b, "\n%s (%d):\n", title, len(group))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, f := range group {
			switch f.Kind {
			case compare.Added:
				row(tw, quote(f.Path), describe(f.New), OriginText(f.Origin))
			case compare.Removed:
				row(tw, quote(f.Path), describe(f.Old), OriginText(f.Origin))
			case compare.Changed:
				row(tw, quote(f.Path), strings.Join(f.Attributes, ", "), OriginText(f.Origin))
			}
		}
		tw.Flush()
		if kind == compare.Changed {
			for _, f := range group {
				fmt.Fprintf(&b, "\n  %s\n", quote(f.Path))
				tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
				for _, d := range details(f) {
					fmt.Fprintf(tw, "    %s\t%s\t->\t%s\n", d[0], d[1], d[2])
				}
				tw.Flush()
			}
		}
	}
	if s.Omitted > 0 {
		fmt.Fprintf(&b, "\n%d more findings not listed (limits.maxFindings, or 64 MiB of listed findings)\n", s.Omitted)
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(&b, "\nWarnings (%d):\n", len(r.Warnings))
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "  %s: %s: %s\n", quote(w.Path), Escape(w.Op), Escape(w.Error))
		}
	}
	switch {
	case s.Total == 0 && s.Incomplete > 0:
		fmt.Fprintf(&b, "\nSummary: INCOMPLETE: no differences in what was compared, but %d warnings left part of the tree uncompared (exit %d)\n", s.Incomplete, s.ExitCode)
	case s.Total == 0:
		fmt.Fprintf(&b, "\nSummary: no differences (exit %d)\n", s.ExitCode)
	case s.Incomplete > 0:
		fmt.Fprintf(&b, "\nSummary: %d added, %d removed, %d changed; INCOMPLETE: %d warnings left part of the tree uncompared (exit %d)\n",
			s.Added, s.Removed, s.Changed, s.Incomplete, s.ExitCode)
	default:
		fmt.Fprintf(&b, "\nSummary: %d added, %d removed, %d changed (exit %d)\n", s.Added, s.Removed, s.Changed, s.ExitCode)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("failed to write report: %w", err)
	}
	return nil
}

// row writes one finding's line: its cells, tab-separated, the origin
// last and left out when there is none (podfim diff).
func row(w io.Writer, path, what, origin string) {
	if origin == "" {
		fmt.Fprintf(w, "  %s\t%s\n", path, what)
		return
	}
	fmt.Fprintf(w, "  %s\t%s\t%s\n", path, what, origin)
}

// signature says how a baseline is signed.
func signature(signed, verified bool, keyID string) string {
	switch {
	case !signed:
		return "unsigned"
	case verified:
		return "signed by " + keyID + ", signature verified"
	}
	return "signed by " + keyID + ", signature not verified (no --verify-key)"
}

// describe is the one-line description of an added or removed entry.
func describe(e *attr.Entry) string {
	parts := []string{e.Type.String()}
	if e.Attrs.Has(attr.Mode) {
		parts = append(parts, fmt.Sprintf("%04o", e.Mode))
	}
	if e.Attrs.Any(attr.UID | attr.GID) {
		parts = append(parts, fmt.Sprintf("%d:%d", e.UID, e.GID))
	}
	if e.Type == attr.TypeRegular && e.Attrs.Has(attr.Size) {
		parts = append(parts, bytesHuman(e.Size))
	}
	if e.Type == attr.TypeSymlink && e.Attrs.Has(attr.Target) {
		parts = append(parts, "-> "+quote(e.Target))
	}
	return strings.Join(parts, "  ")
}

// details lists {attribute, old, new} for every changed attribute.
func details(f compare.Finding) [][3]string {
	o, n := f.Old, f.New
	var out [][3]string
	for _, name := range f.Attributes {
		switch name {
		case "type":
			out = append(out, [3]string{"type", typeString(o), typeString(n)})
		case "mode":
			out = append(out, [3]string{"mode", fmt.Sprintf("%04o", o.Mode), fmt.Sprintf("%04o", n.Mode)})
		case "uid":
			out = append(out, [3]string{"uid", fmt.Sprint(o.UID), fmt.Sprint(n.UID)})
		case "gid":
			out = append(out, [3]string{"gid", fmt.Sprint(o.GID), fmt.Sprint(n.GID)})
		case "size":
			out = append(out, [3]string{"size", fmt.Sprint(o.Size), fmt.Sprint(n.Size)})
		case "inode":
			out = append(out, [3]string{"inode", fmt.Sprint(o.Inode), fmt.Sprint(n.Inode)})
		case "nlink":
			out = append(out, [3]string{"nlink", fmt.Sprint(o.Nlink), fmt.Sprint(n.Nlink)})
		case "target":
			out = append(out, [3]string{"target", quote(o.Target), quote(n.Target)})
		case "mtime":
			out = append(out, [3]string{"mtime", Time(o.Mtime), Time(n.Mtime)})
		case "ctime":
			out = append(out, [3]string{"ctime", Time(o.Ctime), Time(n.Ctime)})
		case "sha256", "sha512", "blake3":
			out = append(out, [3]string{name, hashString(o.Hash), hashString(n.Hash)})
		case "acl", "caps", "selinux", "xattrs":
			out = append(out, xattrDetails(name, o, n)...)
		}
	}
	return out
}

func typeString(e *attr.Entry) string {
	if e.Type == attr.TypeChar || e.Type == attr.TypeBlock {
		return fmt.Sprintf("%s %d:%d", e.Type, major(e.Rdev), minor(e.Rdev))
	}
	return e.Type.String()
}

func hashString(h []byte) string {
	if len(h) == 0 {
		return "(none)"
	}
	return hex.EncodeToString(h)
}

func xattrDetails(label string, o, n *attr.Entry) [][3]string {
	om, nm := o.XattrMap(), n.XattrMap()
	names := map[string]bool{}
	for k := range om {
		names[k] = true
	}
	for k := range nm {
		names[k] = true
	}
	var out [][3]string
	for _, x := range slices.Sorted(maps.Keys(names)) {
		if attr.XattrLabel(x) != label {
			continue
		}
		ov, ook := om[x]
		nv, nok := nm[x]
		if ook == nok && bytes.Equal(ov, nv) {
			continue
		}
		out = append(out, [3]string{quote(x), xattrValue(x, ov, ook), xattrValue(x, nv, nok)})
	}
	return out
}

func xattrValue(name string, v []byte, ok bool) string {
	if !ok {
		return "(none)"
	}
	if attr.XattrLabel(name) == "acl" {
		if s, ok := DecodeACL(v); ok {
			return s
		}
	}
	return "base64:" + base64.StdEncoding.EncodeToString(v)
}

func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
