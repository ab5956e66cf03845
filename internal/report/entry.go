package report

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/attr"
)

// EntryText is one line describing every collected attribute of a baseline
// entry, for `podfim baseline show --entries`: the path first, then the
// fields, separated by two spaces; every string from the tree quoted when
// it is not plainly printable or has a space (quote), so that an entry can
// neither start a line of its own, send a terminal escape, nor forge a
// field; xattr values in base64 (ACLs as text).
func EntryText(e *attr.Entry) string {
	parts := []string{quote(e.Path), typeString(e)}
	a := e.Attrs
	if a.Has(attr.Mode) {
		parts = append(parts, fmt.Sprintf("mode=%04o", e.Mode))
	}
	if a.Has(attr.UID) {
		parts = append(parts, fmt.Sprintf("uid=%d", e.UID))
	}
	if a.Has(attr.GID) {
		parts = append(parts, fmt.Sprintf("gid=%d", e.GID))
	}
	if a.Has(attr.Size) {
		parts = append(parts, fmt.Sprintf("size=%d", e.Size))
	}
	if a.Has(attr.Inode) {
		parts = append(parts, fmt.Sprintf("inode=%d", e.Inode))
	}
	if a.Has(attr.Nlink) {
		parts = append(parts, fmt.Sprintf("nlink=%d", e.Nlink))
	}
	if a.Has(attr.Target) && e.Type == attr.TypeSymlink {
		parts = append(parts, "target="+quote(e.Target))
	}
	if a.Has(attr.Mtime) {
		parts = append(parts, "mtime="+Time(e.Mtime))
	}
	if a.Has(attr.Ctime) {
		parts = append(parts, "ctime="+Time(e.Ctime))
	}
	for _, x := range e.Xattrs {
		parts = append(parts, "xattr:"+quoteXattrName(x.Name)+"="+xattrValue(x.Name, x.Value, true))
	}
	if alg := e.HashAlg(); alg != 0 {
		parts = append(parts, alg.String()+"="+hashString(e.Hash))
	}
	if a.Has(attr.Growing) {
		parts = append(parts, "growing")
	}
	if e.Racy {
		parts = append(parts, "racy")
	}
	if e.Layer != 0 {
		parts = append(parts, fmt.Sprintf("layer=%d", e.Layer))
	}
	return strings.Join(parts, "  ")
}

// EntryJSON is a baseline entry as JSON-ready values: EntryFields, the path
// (with path_b64 when it is not valid UTF-8, as in reports), the collected
// attribute names, and the image layer.
func EntryJSON(e *attr.Entry) map[string]any {
	m := EntryFields(e)
	m["path"] = e.Path
	if !utf8.ValidString(e.Path) {
		m["path_b64"] = base64.StdEncoding.EncodeToString([]byte(e.Path))
	}
	m["attributes"] = e.Attrs.Names()
	if e.Racy {
		m["racy"] = true
	}
	if e.Layer != 0 {
		m["layer"] = e.Layer
	}
	return m
}
