package drift

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"path"
	"strings"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
)

// judge decides whether p is drift: its executable first, then the other
// files it maps executable, then the script an interpreter was given. It
// returns the file and the reason, or, when excuse allows it, pending for
// a runtime's helper that is judged again once it execs. Without the
// excuse such a helper is judged by its file: a memfd is memory, a file
// outside the container's root is not an entry of the baseline (added).
func (c *Checker) judge(p target.Process, info target.Info, excuse bool) (file string, r Reason, pending, ok bool) {
	outside := c.entered(p)
	if excuse && (outside || runtimeHelper(p, info)) {
		return "", "", true, false
	}
	if outside {
		return p.Exe, Added, false, true
	}
	if r, ok := c.file(p.Exe, p.ExeDeleted); ok {
		return p.Exe, r, false, true
	}
	maps, over, err := c.cfg.Finder.ExecMappings(p, DefaultMaxMappings)
	if err != nil && !target.Exited(err) {
		c.warnOnce("maps", "cannot read a process's mappings; only its executable is checked", slog.Int("pid", p.PID), slog.String("error", err.Error()))
	}
	if over > 0 {
		c.cfg.Metrics.Overflow(metrics.LimitExecMappings, over)
		c.warnOnce("mappings", "a process maps more executable files than are checked", slog.Int("pid", p.PID), slog.Int("limit", DefaultMaxMappings))
	}
	for _, m := range maps {
		if m.Path == p.Exe {
			continue
		}
		if r, ok := c.file(m.Path, m.Deleted); ok {
			return m.Path, r, false, true
		}
	}
	if s, ok := c.script(info); ok {
		return s, Script, false, true
	}
	return "", "", false, false
}

// entered reports whether p runs a file that is not in the container's
// root at all (neither deleted nor memory-backed, or one that is in no
// tree, which reads as "/"): a process that entered
// the container's mount namespace from outside (setns, as nsenter and a
// runtime's exec helper do) and has not yet exec'ed what it was asked to
// run. Only a process privileged outside the container can do that; it is
// judged again once its executable changes. A process inside the
// container cannot run a file its root does not hold: a file it deletes or
// renames shows as such in /proc/PID/exe.
func (c *Checker) entered(p target.Process) bool {
	if p.RuntimeInit() && !p.ExeDeleted {
		// A file that is the root of its own mount, detached from every
		// tree: runc 1.1 runs `runc init` from a read-only bind mount of
		// itself that it unmounted (MNT_DETACH) before exec ("bindfd"),
		// and only falls back to a memfd without the privilege to mount.
		return true
	}
	if p.ExeDeleted || strings.HasPrefix(p.Exe, "/memfd:") {
		return false
	}
	_, err := c.cfg.Root.Entry(p.Exe, attr.Type)
	return errors.Is(err, fs.ErrNotExist)
}

// file judges one file a process runs or maps executable.
func (c *Checker) file(p string, deleted bool) (Reason, bool) {
	switch {
	case strings.HasPrefix(p, "/memfd:"), under(p, "/dev/shm"):
		return Memory, true
	case deleted:
		return Deleted, true
	case c.onVolume(p):
		return Volume, true
	}
	e, ok := c.cfg.Baseline.Lookup(p)
	if !ok {
		if !c.covers(p) {
			return "", false
		}
		return Added, true
	}
	if e.Type != attr.TypeRegular {
		return Changed, true
	}
	if r := c.compare(p, e); r != "" {
		return r, true
	}
	return "", false
}

// compare tells whether the file at p is the baseline's entry e: "" when
// it is, Changed when it is not, Unverified when its content could not be
// read to tell (larger than MaxFileBytes, unreadable): a hostile app must
// not get a file taken for the baseline's by making it unreadable or
// padding it. The same inode and ctime as a baseline that recorded them
// (first sight) prove it without reading (docs/design.md, "Why --quick is
// sound"); otherwise the file is hashed, once per (path, inode, ctime).
func (c *Checker) compare(p string, e *attr.Entry) Reason {
	cur, err := c.cfg.Root.Entry(p, attr.Type|attr.Inode|attr.Ctime)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Not at its path in the container's root any more: not the
		// baseline's file.
		return Changed
	case err != nil:
		return c.unverified(p, err)
	}
	if e.Attrs.Has(attr.Inode|attr.Ctime) && cur.Inode == e.Inode && cur.Ctime == e.Ctime {
		return ""
	}
	k := fileKey{path: p, inode: cur.Inode, ctime: cur.Ctime}
	if v, ok := c.verdicts[k]; ok {
		return v
	}
	alg := e.HashAlg()
	if alg == 0 {
		// The policy records no content for it: what can be compared is
		// the file's identity, which a baseline without inodes (an image)
		// does not have. Not reported; docs/drift.md.
		return ""
	}
	full, err := c.cfg.Root.EntryWith(p, alg|attr.Type|attr.Inode|attr.Ctime, scan.Options{MaxFileBytes: c.cfg.MaxFileBytes})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Changed
	case err != nil || len(full.Hash) == 0:
		// Not cached: an unreadable file may be read next time.
		return c.unverified(p, err)
	}
	v := Reason("")
	if !bytes.Equal(full.Hash, e.Hash) {
		v = Changed
	}
	if len(c.verdicts) >= maxVerdicts {
		clear(c.verdicts)
	}
	c.verdicts[fileKey{path: p, inode: full.Inode, ctime: full.Ctime}] = v
	return v
}

// unverified logs (once) why a file of the baseline could not be compared;
// the process that runs it is reported with reason Unverified.
func (c *Checker) unverified(p string, err error) Reason {
	why := "not hashed"
	if err != nil {
		why = err.Error()
	}
	c.warnOnce("hash", "cannot compare a file a process runs with the baseline; the process is reported as unverified",
		slog.String("path", p), slog.String("error", why))
	return Unverified
}

func (c *Checker) onVolume(p string) bool {
	for _, mp := range c.cfg.MountPoints {
		if mp != "/" && under(p, mp) {
			return true
		}
	}
	return false
}

// under reports whether p is dir or below it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// interpreters are the programs whose first argument is a program they
// run. Version suffixes (python3.11) are matched by prefix.
var interpreters = []string{"sh", "ash", "bash", "dash", "ksh", "mksh", "zsh", "python", "perl", "ruby", "node", "php", "lua", "tclsh", "awk", "gawk"}

func interpreter(name string) bool {
	name = path.Base(name)
	for _, i := range interpreters {
		if rest, ok := strings.CutPrefix(name, i); ok && (rest == "" || strings.Trim(rest, "0123456789.") == "") {
			return true
		}
	}
	return false
}

// script returns the script an interpreter was given as its first argument
// when it is a regular file of the container that the baseline does not
// hold: "sh /tmp/x.sh", "busybox sh /tmp/x.sh", "python3 x.py" (relative to
// the working directory). An argument that starts with "-" (sh -c '...',
// python -m) is no script: what the code inline does is not seen.
func (c *Checker) script(info target.Info) (string, bool) {
	args := info.Cmdline
	if len(args) > 1 && path.Base(args[0]) == "busybox" {
		args = args[1:]
	}
	if len(args) < 2 || !interpreter(args[0]) || args[1] == "" || strings.HasPrefix(args[1], "-") {
		return "", false
	}
	s := args[1]
	if !strings.HasPrefix(s, "/") {
		if info.Cwd == "" {
			return "", false
		}
		s = path.Join(info.Cwd, s)
	}
	s = path.Clean(s)
	if _, ok := c.cfg.Baseline.Lookup(s); ok || !c.covers(s) {
		return "", false // the file monitor's to compare, or beyond the policy
	}
	e, err := c.cfg.Root.Entry(s, attr.Type)
	if err != nil || e.Type != attr.TypeRegular {
		return "", false // a word, not a file of the container
	}
	return s, true
}

// covers reports whether the baseline's policy speaks of p
// (Config.Covers). A file it does not cover is not judged by the baseline:
// logged once, since every executable outside a policy of part of the
// image goes unjudged (docs/drift.md).
func (c *Checker) covers(p string) bool {
	if c.cfg.Covers == nil || c.cfg.Covers(p) {
		return true
	}
	c.warnOnce("scope", "a process runs a file outside the policy's paths: execution drift cannot tell whether the image holds it; a policy of the whole image (the built-in one, an image baseline) judges every file", slog.String("path", p))
	return false
}
