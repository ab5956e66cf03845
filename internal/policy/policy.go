// Package policy owns what podfim watches: which paths, with which
// attributes, which paths it leaves out, and the limits of a scan. It parses
// and validates the policy file and compiles it into a Matcher that the scan
// consults once per file.
//
// # Format
//
// A policy is one YAML (or JSON) document; docs/policy.md is the user's guide.
//
//	version: 1             # required; the only version
//	hash: sha256           # hash of the presets: sha256 (default) | sha512 | blake3
//	rules:                 # at least one
//	  - path: /            # absolute and clean; this path and everything beneath it
//	    preset: ReadOnly   # ReadOnly | Growing | Ignore
//	  - path: /var/log
//	    preset: Growing
//	  - path: /etc
//	    attributes: [type, mode, uid, gid, sha512]  # instead of a preset
//	  - path: /usr
//	    preset: ReadOnly
//	    remove: [inode]    # add: [...] and remove: [...] adjust a preset
//	exclude:               # glob patterns: never recorded, never walked
//	  - /proc
//	  - "**/*.pyc"
//	limits:                # each one optional; 0 and negative values are errors
//	  maxFiles: 5000000
//	  maxDepth: 256
//	  maxFileBytes: 68719476736
//	  maxFindings: 100000
//
// Parsing is strict: unknown or miscased fields, duplicate keys, a second
// YAML document, unknown presets or attributes, relative or unclean paths,
// duplicate rule paths, bad globs and zero limits are errors that name the
// field, such as `rules[2].preset: unknown preset "Readonly" (want ReadOnly,
// Growing or Ignore)`. So are policies over the bounds of maxRules and its
// siblings, which keep parsing and validation linear in the file's size.
//
// # Presets
//
// With H the policy's hash:
//
//	ReadOnly = type mode uid gid size inode nlink target mtime ctime xattrs H  (attr.All with H)
//	Growing  = type mode uid gid size inode nlink xattrs H growing
//	Ignore   = the subtree is neither recorded nor walked (unless a longer rule re-includes part of it)
//
// Explicit attribute names are those of attr.Parse. A rule has at most one
// hash, "growing" requires "size", and a rule must keep at least one
// attribute. add must name attributes the preset lacks and remove attributes
// it has, so a stale adjustment is an error, not a silent no-op.
//
// # Matching
//
// Paths are relative to the scanned root, start with "/" and are raw bytes
// (they may be invalid UTF-8); they are compared byte for byte, one component
// at a time. Matcher.Match decides in this order:
//
//  1. Excludes. A path is skipped if it, or any of its ancestors, matches an
//     exclude pattern. Patterns start with "/" (anchored at the root) or "**/"
//     and are split at "/" into components. A component is a path.Match
//     pattern (*, ?, [...], \ escapes; none of them crosses a "/"), or "**",
//     which matches zero or more whole components. So "/var/cache/**" skips
//     /var/cache itself and everything beneath it, exactly like "/var/cache",
//     and "**/*.pyc" skips every name ending in .pyc at any depth (and, were
//     it a directory, everything beneath it). Excludes beat every rule.
//  2. Rules. The rule whose path is the longest component-wise prefix of the
//     path wins: "/etc" covers /etc and /etc/passwd but not /etcd. A path no
//     rule covers (there is no "/" rule) is skipped, as is a path whose rule
//     is Ignore. Otherwise Match returns the rule's attributes.
//
// A directory Match skips may still hold paths a longer rule records (a
// policy that only watches /srv/www skips "/" and "/srv"); Matcher.Descend
// tells the walker whether to enter a directory. Excluded directories are
// never entered.
//
// The Matcher never allocates and is safe for concurrent use.
package policy

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Version is the policy format version this package reads.
const Version = 1

// Preset names.
const (
	PresetReadOnly = "ReadOnly"
	PresetGrowing  = "Growing"
	PresetIgnore   = "Ignore"
)

// DefaultHash is the hash of the presets when the policy names none.
const DefaultHash = "sha256"

// maxPolicyBytes bounds what Parse and Load accept: every input has a limit,
// and a policy larger than this is a mistake, not a policy.
const maxPolicyBytes = 1 << 20

// Bounds on what a policy holds, so that parsing, validating and matching
// take time in proportion to the file, not to a power of it (docs/policy.md,
// "Limits of a policy"). Each is far above what a real policy needs; going
// over one is an error that names it.
const (
	// maxRules and maxExcludes bound the two lists.
	maxRules    = 4096
	maxExcludes = 1024
	// maxPathBytes bounds a rule path or an exclude pattern: PATH_MAX, the
	// longest path the kernel resolves in one call.
	maxPathBytes = 4096
	// maxNameBytes bounds one component of either: NAME_MAX, the longest
	// name a Linux file system stores.
	maxNameBytes = 255
	// maxPatternComponents bounds the components of an exclude pattern, so
	// matching a path of n components costs at most n × 64 steps.
	maxPatternComponents = 64
	// maxCrossCheck bounds the check that no recording rule lies under an
	// exclude: every such rule path is matched against every pattern, and
	// one match costs at most (bytes of the path) × (bytes of the pattern),
	// so the product of their totals is what the check costs. 2^26 takes
	// well under a second and admits, say, 1,000 rules against 100 patterns.
	maxCrossCheck = 1 << 26
)

// Policy is a parsed policy. Parse and Load return validated policies with
// defaults filled in; a Policy built in code must pass Validate (Compile
// calls it).
type Policy struct {
	Version int      `json:"version" yaml:"version"`
	Hash    string   `json:"hash" yaml:"hash"`
	Rules   []Rule   `json:"rules" yaml:"rules"`
	Exclude []string `json:"exclude,omitempty" yaml:"exclude,omitempty"`
	Limits  Limits   `json:"limits" yaml:"limits"`
}

// Rule says which attributes podfim records for Path and everything beneath
// it: a Preset, optionally adjusted with Add and Remove, or an explicit list
// of Attributes.
type Rule struct {
	Path       string   `json:"path" yaml:"path"`
	Preset     string   `json:"preset,omitempty" yaml:"preset,omitempty"`
	Attributes []string `json:"attributes,omitempty" yaml:"attributes,omitempty"`
	Add        []string `json:"add,omitempty" yaml:"add,omitempty"`
	Remove     []string `json:"remove,omitempty" yaml:"remove,omitempty"`
	// Transient says whether the sidecar reports a write to a protected
	// file (one whose content is compared and may not grow) that left the
	// content as it was by the time it was checked (a tamper reverted
	// within milliseconds: attribute "transient"). nil means true; false
	// suits files an app legitimately rewrites with the same bytes.
	Transient *bool `json:"transient,omitempty" yaml:"transient,omitempty"`
}

// Limits bound a scan and its report. Every one is positive; Parse fills in
// DefaultLimits for the ones a file leaves out.
type Limits struct {
	// MaxFiles is the most entries one scan records.
	MaxFiles int `json:"maxFiles" yaml:"maxFiles"`
	// MaxDepth is the deepest directory level walked: /a/b has depth 2.
	MaxDepth int `json:"maxDepth" yaml:"maxDepth"`
	// MaxFileBytes is the largest file hashed; larger files are recorded
	// without a hash, with a warning.
	MaxFileBytes int64 `json:"maxFileBytes" yaml:"maxFileBytes"`
	// MaxFindings is the most findings a report lists; the rest are counted.
	MaxFindings int `json:"maxFindings" yaml:"maxFindings"`
}

// DefaultLimits returns the limits used when a policy file omits them. They
// stop a runaway scan (a container that creates files without end, a
// symlink-free but very deep tree) without getting in the way of a full
// distribution image, which holds well under a million files.
func DefaultLimits() Limits {
	return Limits{
		MaxFiles:     5_000_000,
		MaxDepth:     256,
		MaxFileBytes: 64 << 30,
		MaxFindings:  100_000,
	}
}

// Default returns the built-in policy, meant for container images: record
// everything with every attribute, except
//
//   - /proc, /sys, /dev: kernel and runtime file systems, not image content;
//   - /run, /var/run: runtime state, including the service-account token that
//     the kubelet mounts at /var/run/secrets and rotates (/var/run is a real
//     directory in some images, a symlink to /run in most);
//   - /tmp, /var/tmp: scratch space by definition;
//   - /var/cache: caches are regenerated at run time by design (the nginx
//     image creates /var/cache/nginx/*_temp when it starts), so watching them
//     only produces false positives;
//
// and /var/log, where files are Growing. Compiled Python (*.pyc) is
// deliberately not excluded: it is code, and planting a .pyc is a known way
// to persist.
func Default() *Policy {
	rule := func(path, preset string) Rule { return Rule{Path: path, Preset: preset} }
	return &Policy{
		Version: Version,
		Hash:    DefaultHash,
		Rules: []Rule{
			rule("/", PresetReadOnly),
			rule("/dev", PresetIgnore),
			rule("/proc", PresetIgnore),
			rule("/run", PresetIgnore),
			rule("/sys", PresetIgnore),
			rule("/tmp", PresetIgnore),
			rule("/var/cache", PresetIgnore),
			rule("/var/log", PresetGrowing),
			rule("/var/run", PresetIgnore),
			rule("/var/tmp", PresetIgnore),
		},
		Limits: DefaultLimits(),
	}
}

// Parse reads a policy from YAML or JSON, fills in the defaults (hash and
// limits) and validates it.
func Parse(data []byte) (*Policy, error) {
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("policy is %d bytes, more than the limit of %d", len(data), maxPolicyBytes)
	}
	p, err := decode(data)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read policy %q: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			// One problem per line (errors.Join): keep them readable under the prefix.
			return nil, fmt.Errorf("policy %q:%w", path, &indented{err})
		}
		return nil, fmt.Errorf("policy %q: %w", path, err)
	}
	return p, nil
}

// indented puts each line of a multi-line error on its own indented line.
type indented struct{ err error }

func (e *indented) Error() string {
	return "\n  " + strings.ReplaceAll(e.err.Error(), "\n", "\n  ")
}

func (e *indented) Unwrap() error { return e.err }
