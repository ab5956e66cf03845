// Package report renders the outcome of a check for machines (JSON) and for
// people (aligned text). It owns the JSON report schema documented in
// docs/report.md.
package report

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
)

// Report is everything a check has to say.
type Report struct {
	Findings []compare.Finding
	Summary  Summary
	Warnings []Warning
}

// Summary describes the check as a whole.
type Summary struct {
	Added           int   `json:"added"`
	Removed         int   `json:"removed"`
	Changed         int   `json:"changed"`
	Total           int   `json:"total"`
	Omitted         int   `json:"omitted"` // counted but not listed (limits.maxFindings, compare.MaxFindingBytes)
	BaselineEntries int   `json:"baseline_entries"`
	ScannedEntries  int   `json:"scanned_entries"`
	Hashed          int64 `json:"hashed"`
	HashedBytes     int64 `json:"hashed_bytes"`
	Reused          int64 `json:"reused_hashes"`  // quick check: hashes taken from the baseline
	PseudoSkipped   int64 `json:"pseudo_skipped"` // pseudo file system mounts (procfs, sysfs...) not walked
	// Incomplete counts the warnings that mean part of the tree was not
	// compared (a path not recorded or not descended, a content not
	// hashed): a check with any is not a check of the whole tree.
	Incomplete      int     `json:"incomplete"`
	Quick           bool    `json:"quick"`
	Root            string  `json:"root"`
	BaselineDigest  string  `json:"baseline_digest"`
	Signed          bool    `json:"signed"`
	KeyID           string  `json:"key_id,omitempty"`
	Verified        bool    `json:"signature_verified"`
	DurationSeconds float64 `json:"duration_seconds"`
	ExitCode        int     `json:"exit_code"`
	// Against is the second baseline of a diff of two baselines (podfim
	// diff): Root is then the first one's file, and nothing was scanned.
	Against *Baseline `json:"against,omitempty"`
}

// Baseline describes a baseline file that a report compares with.
type Baseline struct {
	File     string `json:"file"`
	Entries  int    `json:"entries"`
	Digest   string `json:"digest"`
	Signed   bool   `json:"signed"`
	KeyID    string `json:"key_id,omitempty"`
	Verified bool   `json:"signature_verified"`
}

// Warning is a non-fatal problem met during the scan.
type Warning struct {
	Path  string `json:"path"`
	Op    string `json:"op"`
	Error string `json:"error"`
}

// NewSummary fills the counts of a summary from a comparison.
func NewSummary(r compare.Result) Summary {
	return Summary{
		Added: r.Counts.Added, Removed: r.Counts.Removed, Changed: r.Counts.Changed,
		Total: r.Counts.Total(), Omitted: r.Omitted, ExitCode: r.Counts.ExitCode(),
	}
}

type jsonReport struct {
	Findings []jsonFinding `json:"findings"`
	Summary  Summary       `json:"summary"`
	Warnings []Warning     `json:"warnings"`
}

type jsonFinding struct {
	Path       string       `json:"path"`
	PathB64    string       `json:"path_b64,omitempty"`
	Kind       compare.Kind `json:"kind"`
	Attributes []string     `json:"attributes"`
	Origin
	Old map[string]any `json:"old,omitempty"`
	New map[string]any `json:"new,omitempty"`
}

// JSON writes the report as one JSON document.
func JSON(w io.Writer, r *Report) error {
	out := jsonReport{Findings: []jsonFinding{}, Summary: r.Summary, Warnings: r.Warnings}
	if out.Warnings == nil {
		out.Warnings = []Warning{}
	}
	for _, f := range r.Findings {
		jf := jsonFinding{Path: f.Path, Kind: f.Kind, Attributes: f.Attributes, Origin: NewOrigin(f.Origin)}
		if jf.Attributes == nil {
			jf.Attributes = []string{}
		}
		if !utf8.ValidString(f.Path) {
			jf.PathB64 = base64.StdEncoding.EncodeToString([]byte(f.Path))
		}
		if f.Old != nil {
			jf.Old = EntryFields(f.Old)
		}
		if f.New != nil {
			jf.New = EntryFields(f.New)
		}
		out.Findings = append(out.Findings, jf)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("failed to write JSON report: %w", err)
	}
	return nil
}

// EntryFields returns the collected attributes of an entry as JSON-ready
// values: modes in octal, times in RFC 3339 with nanoseconds, hashes in hex,
// xattr values in base64, and POSIX ACLs also as text.
func EntryFields(e *attr.Entry) map[string]any {
	m := map[string]any{"type": e.Type.String()}
	a := e.Attrs
	if a.Has(attr.Mode) {
		m["mode"] = fmt.Sprintf("%04o", e.Mode)
	}
	if a.Has(attr.UID) {
		m["uid"] = e.UID
	}
	if a.Has(attr.GID) {
		m["gid"] = e.GID
	}
	if a.Has(attr.Size) {
		m["size"] = e.Size
	}
	if a.Has(attr.Inode) {
		m["inode"] = e.Inode
	}
	if a.Has(attr.Nlink) {
		m["nlink"] = e.Nlink
	}
	if e.Type == attr.TypeChar || e.Type == attr.TypeBlock {
		m["rdev"] = fmt.Sprintf("%d:%d", major(e.Rdev), minor(e.Rdev))
	}
	if a.Has(attr.Target) && e.Type == attr.TypeSymlink {
		m["target"] = e.Target
		if !utf8.ValidString(e.Target) {
			m["target_b64"] = base64.StdEncoding.EncodeToString([]byte(e.Target))
		}
	}
	if a.Has(attr.Mtime) {
		m["mtime"] = Time(e.Mtime)
	}
	if a.Has(attr.Ctime) {
		m["ctime"] = Time(e.Ctime)
	}
	if a.Has(attr.Xattrs) && len(e.Xattrs) > 0 {
		xattrFields(m, e.Xattrs)
	}
	if alg := e.HashAlg(); alg != 0 && len(e.Hash) > 0 {
		m[alg.String()] = hex.EncodeToString(e.Hash)
	}
	return m
}

// xattrFields sets "xattrs" (name -> base64 value) and, for names that are
// not valid UTF-8, "xattrs_b64" (base64 name -> base64 value): encoding/json
// would replace their invalid bytes with U+FFFD, so two such names would
// collapse into one key and the report would lose one of them.
func xattrFields(m map[string]any, xattrs []attr.Xattr) {
	xs := make(map[string]string, len(xattrs))
	var raw map[string]string
	for _, x := range xattrs {
		v := base64.StdEncoding.EncodeToString(x.Value)
		if !utf8.ValidString(x.Name) {
			if raw == nil {
				raw = map[string]string{}
			}
			raw[base64.StdEncoding.EncodeToString([]byte(x.Name))] = v
			continue
		}
		xs[x.Name] = v
		if acl, ok := DecodeACL(x.Value); ok && attr.XattrLabel(x.Name) == "acl" {
			m[aclKey(x.Name)] = acl
		}
	}
	if len(xs) > 0 {
		m["xattrs"] = xs
	}
	if raw != nil {
		m["xattrs_b64"] = raw
	}
}

func aclKey(name string) string {
	if name == "system.posix_acl_default" {
		return "acl_default"
	}
	return "acl"
}

// Time formats nanoseconds since the epoch as RFC 3339 in UTC with all nine
// digits, so a sub-second change is visible.
func Time(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}

func major(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func minor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }

// Escape shows a message (a warning's error, which names paths with %q but
// may carry other text) as is when every rune is printable, Go-quoted
// otherwise.
func Escape(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// quote shows a string from the tree (a path, a link target, an xattr name)
// as is when it is printable UTF-8 without a space, and Go-quoted
// otherwise, so that a hostile name can neither start a line of its own,
// send a terminal escape, nor pass for the fields that follow it: text
// output separates fields with spaces (two in `baseline show --entries`,
// columns in reports), so a name with a space is always delimited, and in
// the quoted form of one with two spaces in a row every space is written
// \x20, so that no field ever holds the two-space separator. Every such
// string in text output goes through it; strconv.Unquote gives it back.
func quote(s string) string {
	if !needsQuote(s) {
		return s
	}
	q := strconv.Quote(s)
	if strings.Contains(q, "  ") {
		q = strings.ReplaceAll(q, " ", `\x20`)
	}
	return q
}

func needsQuote(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r == ' ' || !strconv.IsPrint(r) || r == '"' || r == '\\' {
			return true
		}
	}
	return false
}

// quoteXattrName is quote for an xattr name written as NAME=VALUE: a name
// with '=' in it is quoted too, so that it cannot pass for a shorter name
// and a value.
func quoteXattrName(s string) string {
	if strings.Contains(s, "=") && !needsQuote(s) {
		return strconv.Quote(s)
	}
	return quote(s)
}
