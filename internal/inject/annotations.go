package inject

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/respond"
)

// Prefix is the prefix of every podfim annotation and label.
const Prefix = "podfim.io/"

// The opt-in label (on the namespace or the pod; the
// MutatingWebhookConfiguration selects on it) and the pod annotations that
// configure the sidecar. docs/webhook.md describes each.
const (
	LabelInject = Prefix + "inject" // "enabled" opts in, "disabled" opts a pod out of an enabled namespace
	InjectOn    = "enabled"
	InjectOff   = "disabled"
	// LabelProtect opts a pod, or every pod of a namespace, in to the node
	// agent (podfim agent): InjectOn or InjectOff, as LabelInject.
	LabelProtect = Prefix + "protect"
	AnnStatus    = Prefix + "status" // set by the webhook: "injected"
	StatusDone   = "injected"
	AnnTarget    = Prefix + "target"
	AnnPaths     = Prefix + "paths"
	AnnExclude   = Prefix + "exclude"
	AnnRespond   = Prefix + "respond"
	AnnEscalate  = Prefix + "escalate"
	AnnKillLimit = Prefix + "kill-limit"
	AnnKillWin   = Prefix + "kill-window"
	AnnWebhook   = Prefix + "webhook-url"
	AnnBaseline  = Prefix + "baseline"
	AnnVerifyKey = Prefix + "verify-key"
	AnnSubject   = Prefix + "subject"
	// AnnBaselineMap names the ConfigMap of baselines for several images
	// (podfim.io/baseline: configmap).
	AnnBaselineMap = Prefix + "baseline-configmap"
	AnnQuick       = Prefix + "quick-interval"
	AnnFull        = Prefix + "full-interval"
	AnnPort        = Prefix + "port"
	AnnLogLevel    = Prefix + "log-level"
	AnnExecDrift   = Prefix + "exec-drift"
	// AnnEvidenceMax bounds the evidence the sidecar keeps
	// (--evidence-max-bytes), a quantity such as 16Mi.
	AnnEvidenceMax = Prefix + "evidence-max-bytes"
	// AnnPrivileges picks the sidecar's privileges: PrivilegesDefault or
	// PrivilegesRestricted (docs/security.md, "Restricted mode").
	AnnPrivileges = Prefix + "privileges"
)

// Privilege modes of the sidecar (AnnPrivileges, the webhook's
// --sidecar-privileges).
const (
	// PrivilegesDefault: uid 0 with SYS_PTRACE and DAC_READ_SEARCH, and
	// the capabilities of the response's actions: it sees and repairs
	// every file of the app, whatever its owner.
	PrivilegesDefault = "default"
	// PrivilegesRestricted: the app's uid and gid, no capability at all,
	// what Pod Security "restricted" admits: it sees what the app's user
	// can read, restores that user's files and kills its processes.
	PrivilegesRestricted = "restricted"
)

// managed are the podfim.io/ annotations podfim itself sets on a pod: a
// spec copied from such a pod is not an error.
var managed = []string{AnnStatus, kube.AnnotationQuarantine}

// Limits on annotation values. Every input has a limit; these are far above
// any sensible pod and far below what would make the patch large.
const (
	maxValueBytes = 4096
	maxPaths      = 64
	maxExcludes   = 64
	// maxSubjectBytes is baseline.MaxSubjectBytes: a longer subject is
	// one no baseline can carry.
	maxSubjectBytes = 1024
	// DefaultPort is the sidecar's /metrics, /healthz and /readyz port.
	DefaultPort = 9090
)

// Baseline sources (the scheme of AnnBaseline and AnnVerifyKey).
const (
	SourceFirstSight = "first-sight"
	SourceConfigMap  = "configmap"
	SourceFile       = "file"
	// SourceRegistry: the running image's signed baseline referrer, pulled
	// from the image's registry (docs/image-baselines.md).
	SourceRegistry = "registry"
)

// Ref names a file the sidecar reads: a key of a ConfigMap mounted into the
// sidecar only, or a path inside the sidecar's image.
type Ref struct {
	Source string // SourceConfigMap or SourceFile
	// ConfigMap and Key name the ConfigMap's entry (SourceConfigMap).
	ConfigMap, Key string
	// Path is the absolute path in the sidecar's image (SourceFile).
	Path string
}

func (r Ref) String() string {
	if r.Source == SourceConfigMap {
		return SourceConfigMap + ":" + r.ConfigMap + "/" + r.Key
	}
	return SourceFile + ":" + r.Path
}

// PathRule is one entry of AnnPaths.
type PathRule struct {
	Path, Preset string
}

// Settings are a pod's validated annotations. The zero value of a field
// means "not set": the sidecar's (or the webhook's) default applies.
type Settings struct {
	Target    string
	Paths     []PathRule
	Exclude   []string
	Respond   []string
	Escalate  []string
	KillLimit int // 0: not set
	KillWin   time.Duration
	Webhook   string
	Baseline  *Ref // nil: first sight, or Registry
	Registry  bool // podfim.io/baseline: registry
	// MapSource: podfim.io/baseline: configmap, the baselines of several
	// images in the ConfigMap BaselineMap (podfim.io/baseline-configmap).
	MapSource   bool
	BaselineMap string
	VerifyKey   *Ref
	Subject     string         // the sidecar's --subject; "" not set
	Quick       *time.Duration // nil: not set; 0 disables quick checks
	Full        *time.Duration
	Port        int // 0: DefaultPort
	LogLevel    string
	// Privileges is PrivilegesDefault or PrivilegesRestricted; "": the
	// webhook's --sidecar-privileges.
	Privileges string
	ExecDrift  *bool // nil: not set (the sidecar's default, on)
	// EvidenceMax is --evidence-max-bytes; 0: not set.
	EvidenceMax int64
}

// AnnotationError is an invalid annotation: the admission response names the
// annotation and the problem.
type AnnotationError struct {
	Key, Problem string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %q: %s", e.Key, e.Problem)
}

// annotation is one annotation a user may set: parse validates its
// (trimmed, non-empty, bounded) value and stores it in the settings, or
// returns the problem (errors.Join for several).
type annotation struct {
	key   string
	parse func(s *Settings, v string) error
}

// annotations is the table of per-key parsers, in the order errors name
// them; the checks across keys are in crossCheck. An annotation added here
// is known: any other podfim.io/ annotation is an error, because a typo
// must not silently leave a pod less protected than its author believes.
var annotations = []annotation{
	{AnnTarget, parseTarget},
	{AnnPaths, func(s *Settings, v string) (err error) { s.Paths, err = parsePaths(v); return err }},
	{AnnExclude, parseExclude},
	{AnnRespond, func(s *Settings, v string) error { s.Respond = splitList(v); return nil }},
	{AnnEscalate, func(s *Settings, v string) error { s.Escalate = splitList(v); return nil }},
	{AnnKillLimit, parseKillLimit},
	{AnnKillWin, parseKillWindow},
	{AnnWebhook, func(s *Settings, v string) error { s.Webhook = v; return nil }},
	{AnnBaseline, parseBaseline},
	{AnnVerifyKey, func(s *Settings, v string) (err error) { s.VerifyKey, err = parseRefPtr(v); return err }},
	{AnnSubject, parseSubject},
	{AnnBaselineMap, parseBaselineMap},
	{AnnQuick, func(s *Settings, v string) (err error) { s.Quick, err = parseInterval(v); return err }},
	{AnnFull, func(s *Settings, v string) (err error) { s.Full, err = parseInterval(v); return err }},
	{AnnPort, parsePort},
	{AnnLogLevel, parseLogLevel},
	{AnnPrivileges, parsePrivileges},
	{AnnExecDrift, parseExecDrift},
	{AnnEvidenceMax, parseEvidenceMax},
}

// knownKeys lists the annotations of the table, in its order.
func knownKeys() []string {
	keys := make([]string, len(annotations))
	for i, a := range annotations {
		keys[i] = a.key
	}
	return keys
}

// ParseAnnotations reads and validates the podfim annotations of a pod:
// each by its own parser (the table annotations), then the checks across
// them (crossCheck). defaultRespond is the response when the pod names
// none; it is validated together with the pod's other choices. Every
// problem is reported (joined AnnotationErrors): unknown annotations first,
// then in the order of the table, then the checks across keys.
func ParseAnnotations(ann map[string]string, defaultRespond []string) (Settings, error) {
	var s Settings
	var errs []error
	bad := func(key string, err error) {
		for _, e := range unjoin(err) {
			errs = append(errs, &AnnotationError{Key: key, Problem: e.Error()})
		}
	}
	known := knownKeys()
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		if strings.HasPrefix(k, Prefix) && !slices.Contains(managed, k) && !slices.Contains(known, k) {
			bad(k, fmt.Errorf("unknown podfim annotation (known: %s)", strings.Join(known, ", ")))
		}
	}
	for _, a := range annotations {
		v, ok := ann[a.key]
		if !ok {
			continue
		}
		if err := checkValue(v); err != nil {
			bad(a.key, err)
			continue
		}
		if err := a.parse(&s, strings.TrimSpace(v)); err != nil {
			bad(a.key, err)
		}
	}
	for _, e := range crossCheck(&s, ann, defaultRespond) {
		errs = append(errs, e)
	}
	if err := errors.Join(errs...); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// checkValue bounds a value and refuses an empty one.
func checkValue(v string) error {
	if len(v) > maxValueBytes {
		return fmt.Errorf("value is %d bytes, more than %d", len(v), maxValueBytes)
	}
	if strings.TrimSpace(v) == "" {
		return errors.New("empty value (remove the annotation to use the default)")
	}
	return nil
}

// crossCheck checks what no single annotation decides: the policy the paths
// and excludes make, the response plan (by the sidecar's own validation, so
// that the webhook accepts exactly what the sidecar will run), the webhook
// URL without the webhook action, a key without a baseline file. It clears
// the settings it refuses.
func crossCheck(s *Settings, ann map[string]string, defaultRespond []string) []*AnnotationError {
	var errs []*AnnotationError
	bad := func(key, format string, args ...any) {
		errs = append(errs, &AnnotationError{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	if len(s.Paths) > 0 || len(s.Exclude) > 0 {
		if _, err := s.Policy(); err != nil {
			key := AnnPaths
			if len(s.Paths) == 0 {
				key = AnnExclude
			}
			bad(key, "the policy it makes is invalid: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	plan := s.Plan(defaultRespond)
	for _, e := range plan.Validate() {
		key, msg := planAnnotations[rootField(e.Field)], e.Error()
		if key == AnnWebhook && s.Webhook == "" {
			key, msg = AnnRespond, "the webhook action needs the annotation "+AnnWebhook
		}
		bad(key, "%s", msg)
	}
	if s.Webhook != "" && !slices.Contains(plan.Actions, respond.ActionWebhook) && !slices.Contains(plan.Escalate, respond.ActionWebhook) {
		bad(AnnWebhook, "set, but neither %s nor %s has the webhook action", AnnRespond, AnnEscalate)
	}
	if s.Registry && s.VerifyKey == nil {
		// Fail closed: anyone can attach an unsigned baseline to an image.
		bad(AnnBaseline, "%q needs %s: only a baseline signed by a key you trust can vouch for an image", SourceRegistry, AnnVerifyKey)
	}
	errs = append(errs, checkMapSource(s)...)
	if s.Subject != "" && s.Baseline == nil && !s.Registry && !s.MapSource {
		// As the sidecar's --subject: a first-sight baseline is made for
		// whatever runs.
		bad(AnnSubject, "needs %s (a file, a ConfigMap or %q): a first-sight baseline is made for whatever runs", AnnBaseline, SourceRegistry)
		s.Subject = ""
	}
	// A baseline annotation that failed to parse has its own error.
	if b := strings.TrimSpace(ann[AnnBaseline]); s.VerifyKey != nil && s.Baseline == nil && (b == "" || b == SourceFirstSight) {
		bad(AnnVerifyKey, "only a baseline file can be verified: set %s too", AnnBaseline)
		s.VerifyKey = nil
	}
	return errs
}

func parseTarget(s *Settings, v string) error {
	if len(validation.IsDNS1123Label(v)) > 0 {
		return fmt.Errorf("%q is not a container name (a DNS label: lower-case letters, digits and '-', at most 63)", v)
	}
	s.Target = v
	return nil
}

func parseExclude(s *Settings, v string) error {
	s.Exclude = splitList(v)
	if len(s.Exclude) > maxExcludes {
		return fmt.Errorf("%d patterns, more than %d", len(s.Exclude), maxExcludes)
	}
	return nil
}

func parseKillLimit(s *Settings, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return fmt.Errorf("%q is not a whole number from 1 to 1000", v)
	}
	s.KillLimit = n
	return nil
}

// maxEvidenceBytes bounds podfim.io/evidence-max-bytes: the evidence
// lives in the pod's emptyDir, on the node's disk.
const maxEvidenceBytes = 16 << 30

func parseEvidenceMax(s *Settings, v string) error {
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() <= 0 || q.Cmp(*resource.NewQuantity(maxEvidenceBytes, resource.BinarySI)) > 0 {
		return fmt.Errorf("%q is not a size from 1 to 16Gi (e.g. 16Mi)", v)
	}
	s.EvidenceMax = q.Value()
	return nil
}

func parseKillWindow(s *Settings, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration (e.g. 10m)", v)
	}
	s.KillWin = d
	return nil
}

func parseBaseline(s *Settings, v string) error {
	switch v {
	case SourceFirstSight:
		return nil
	case SourceRegistry:
		s.Registry = true
		return nil
	case SourceConfigMap:
		s.MapSource = true
		return nil
	}
	r, err := parseRef(v)
	if err != nil {
		return fmt.Errorf("%w (or %q, %q, or %q with %s)", err, SourceFirstSight, SourceRegistry, SourceConfigMap, AnnBaselineMap)
	}
	s.Baseline = &r
	return nil
}

// parseSubject reads the subject a baseline must have been made for
// (baseline --subject): printable UTF-8, at most maxSubjectBytes. It
// reaches the sidecar's command line and its log lines.
func parseSubject(s *Settings, v string) error {
	if len(v) > maxSubjectBytes {
		return fmt.Errorf("%d bytes, more than %d (a baseline's subject is at most that)", len(v), maxSubjectBytes)
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return fmt.Errorf("%q: not printable text (letters, digits, punctuation and spaces)", v)
	}
	s.Subject = v
	return nil
}

func parseBaselineMap(s *Settings, v string) error {
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return fmt.Errorf("%q is not a ConfigMap name: %s", v, strings.Join(errs, "; "))
	}
	s.BaselineMap = v
	return nil
}

// checkMapSource checks podfim.io/baseline: configmap and
// podfim.io/baseline-configmap together: each needs the other, and, as
// registry, a key (a ConfigMap is anyone's with write access to the
// namespace to fill). It clears what it refuses.
func checkMapSource(s *Settings) []*AnnotationError {
	var errs []*AnnotationError
	switch {
	case s.MapSource && s.BaselineMap == "":
		errs = append(errs, &AnnotationError{Key: AnnBaseline, Problem: fmt.Sprintf("%q needs %s: the ConfigMap that holds the baselines of the images", SourceConfigMap, AnnBaselineMap)})
	case !s.MapSource && s.BaselineMap != "":
		errs = append(errs, &AnnotationError{Key: AnnBaselineMap, Problem: fmt.Sprintf("set, but %s is not %q", AnnBaseline, SourceConfigMap)})
		s.BaselineMap = ""
	}
	if s.MapSource && s.VerifyKey == nil {
		errs = append(errs, &AnnotationError{Key: AnnBaseline, Problem: fmt.Sprintf("%q needs %s: only a baseline signed by a key you trust can vouch for an image", SourceConfigMap, AnnVerifyKey)})
	}
	return errs
}

func parseRefPtr(v string) (*Ref, error) {
	r, err := parseRef(v)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// parseInterval reads a check interval: 0 disables the check, anything
// else is at least a second.
func parseInterval(v string) (*time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 1h; 0 disables)", v)
	case d < 0:
		return nil, fmt.Errorf("%q is negative", v)
	case d > 0 && d < time.Second:
		return nil, fmt.Errorf("%q is below 1s: a check that often only burns CPU", v)
	}
	return &d, nil
}

func parsePort(s *Settings, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q is not a port number from 1 to 65535", v)
	}
	s.Port = n
	return nil
}

// parseExecDrift takes "true" or "false" only: a "no" or "off" that a
// looser parser took for true would leave a pod watched that its author
// meant to exempt, or the reverse.
func parseExecDrift(s *Settings, v string) error {
	switch v {
	case "true", "false":
		on := v == "true"
		s.ExecDrift = &on
		return nil
	}
	return fmt.Errorf("%q is not true or false", v)
}

func parseLogLevel(s *Settings, v string) error {
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, v) {
		return fmt.Errorf("%q is not one of debug, info, warn, error", v)
	}
	s.LogLevel = v
	return nil
}

func parsePrivileges(s *Settings, v string) error {
	if err := checkPrivileges(v); err != nil {
		return err
	}
	s.Privileges = v
	return nil
}

// checkPrivileges accepts a privilege mode.
func checkPrivileges(v string) error {
	if v != PrivilegesDefault && v != PrivilegesRestricted {
		return fmt.Errorf("%q is not %s or %s", v, PrivilegesDefault, PrivilegesRestricted)
	}
	return nil
}

// parsePaths reads "PATH[:PRESET],...". A path without a preset is
// ReadOnly. The policy built from the rules checks the paths themselves.
func parsePaths(v string) ([]PathRule, error) {
	var out []PathRule
	var errs []error
	items := splitList(v)
	if len(items) > maxPaths {
		return nil, fmt.Errorf("%d paths, more than %d", len(items), maxPaths)
	}
	for _, item := range items {
		p, preset, hasPreset := strings.Cut(item, ":")
		if !hasPreset {
			preset = policy.PresetReadOnly
		}
		switch preset {
		case policy.PresetReadOnly, policy.PresetGrowing, policy.PresetIgnore:
		default:
			errs = append(errs, fmt.Errorf("%q: unknown preset %q (want %s, %s or %s)", item, preset, policy.PresetReadOnly, policy.PresetGrowing, policy.PresetIgnore))
			continue
		}
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
			errs = append(errs, fmt.Errorf("%q: the path must be absolute and clean (like /srv/www)", item))
			continue
		}
		out = append(out, PathRule{Path: p, Preset: preset})
	}
	return out, errors.Join(errs...)
}

// parseRef reads "configmap:NAME/KEY" or "file:/ABS/PATH".
func parseRef(v string) (Ref, error) {
	scheme, rest, _ := strings.Cut(v, ":")
	switch scheme {
	case SourceConfigMap:
		name, key, ok := strings.Cut(rest, "/")
		if !ok || len(validation.IsDNS1123Subdomain(name)) > 0 || len(validation.IsConfigMapKey(key)) > 0 {
			return Ref{}, fmt.Errorf("%q: want %s:NAME/KEY with a ConfigMap name and one of its keys", v, SourceConfigMap)
		}
		return Ref{Source: SourceConfigMap, ConfigMap: name, Key: key}, nil
	case SourceFile:
		if !strings.HasPrefix(rest, "/") || path.Clean(rest) != rest || strings.ContainsAny(rest, ",\x00") {
			return Ref{}, fmt.Errorf("%q: want %s:/ABSOLUTE/PATH in the sidecar's image", v, SourceFile)
		}
		if rest == "/proc" || strings.HasPrefix(rest, "/proc/") {
			// /proc/<pid>/root is the app container's file system: a
			// baseline or key there is the app's to rewrite.
			return Ref{}, fmt.Errorf("%q: a path under /proc is not in the sidecar's image (it may reach the app container's files)", v)
		}
		return Ref{Source: SourceFile, Path: rest}, nil
	}
	return Ref{}, fmt.Errorf("%q: want %s:NAME/KEY or %s:/PATH", v, SourceConfigMap, SourceFile)
}

// Policy returns the policy the sidecar gets, or nil for the sidecar's
// built-in default (no paths and no excludes annotated). Paths replace the
// default's rules, except its Ignore rules under an annotated path (/proc,
// /sys, /dev, /run, ...: what the runtime, not the image, puts there), which
// stay unless the annotation names that path itself: "podfim.io/paths: /"
// must not walk /proc. Excludes are added to the rules in effect.
func (s Settings) Policy() (*policy.Policy, error) {
	if len(s.Paths) == 0 && len(s.Exclude) == 0 {
		return nil, nil
	}
	p := policy.Default()
	if len(s.Paths) > 0 {
		p.Rules = pathRules(s.Paths, p.Rules)
	}
	p.Exclude = slices.Clone(s.Exclude)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// pathRules are the rules of the annotated paths, followed by the Ignore
// rules of defaults that lie under one of them and that no annotated path
// names.
func pathRules(paths []PathRule, defaults []policy.Rule) []policy.Rule {
	rules := make([]policy.Rule, 0, len(paths))
	named := map[string]bool{}
	for _, r := range paths {
		rules = append(rules, policy.Rule{Path: r.Path, Preset: r.Preset})
		named[r.Path] = true
	}
	for _, d := range defaults {
		if d.Preset != policy.PresetIgnore || named[d.Path] {
			continue
		}
		if slices.ContainsFunc(paths, func(r PathRule) bool { return within(d.Path, r.Path) }) {
			rules = append(rules, d)
		}
	}
	return rules
}

// within reports whether the clean absolute path p is dir or lies under it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// Annotations writes s back as annotations in canonical form: ParseAnnotations
// of the result gives s again.
func (s Settings) Annotations() map[string]string {
	m := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set(AnnTarget, s.Target)
	var paths []string
	for _, r := range s.Paths {
		paths = append(paths, r.Path+":"+r.Preset)
	}
	set(AnnPaths, strings.Join(paths, ","))
	set(AnnExclude, strings.Join(s.Exclude, ","))
	set(AnnRespond, strings.Join(s.Respond, ","))
	set(AnnEscalate, strings.Join(s.Escalate, ","))
	if s.KillLimit != 0 {
		set(AnnKillLimit, strconv.Itoa(s.KillLimit))
	}
	if s.KillWin != 0 {
		set(AnnKillWin, s.KillWin.String())
	}
	set(AnnWebhook, s.Webhook)
	switch {
	case s.Baseline != nil:
		set(AnnBaseline, s.Baseline.String())
	case s.Registry:
		set(AnnBaseline, SourceRegistry)
	case s.MapSource:
		set(AnnBaseline, SourceConfigMap)
	}
	set(AnnBaselineMap, s.BaselineMap)
	if s.VerifyKey != nil {
		set(AnnVerifyKey, s.VerifyKey.String())
	}
	set(AnnSubject, s.Subject)
	if s.Quick != nil {
		m[AnnQuick] = s.Quick.String()
	}
	if s.Full != nil {
		m[AnnFull] = s.Full.String()
	}
	if s.Port != 0 {
		set(AnnPort, strconv.Itoa(s.Port))
	}
	set(AnnLogLevel, s.LogLevel)
	set(AnnPrivileges, s.Privileges)
	return m
}

// unjoin returns the errors errors.Join combined (or err itself).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// splitList splits a comma-separated list, trimming blanks and dropping
// empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Plan is the sidecar's response plan of s: its actions, or defaultRespond
// when the pod names none.
func (s Settings) Plan(defaultRespond []string) respond.Plan {
	list := s.Respond
	if list == nil {
		list = defaultRespond
	}
	p := respond.Plan{Actions: respond.ParseActions(list...), Escalate: respond.ParseActions(s.Escalate...), KillLimit: s.KillLimit, KillWindow: s.KillWin}
	if s.Webhook != "" {
		p.Webhook = &respond.WebhookConfig{URL: s.Webhook}
	}
	return p
}

// planAnnotations maps a field of respond.Plan to the annotation that sets
// it, so that the sidecar's own validation of the plan reports in the pod's
// terms.
var planAnnotations = map[string]string{
	"actions":    AnnRespond,
	"escalate":   AnnEscalate,
	"killLimit":  AnnKillLimit,
	"killWindow": AnnKillWin,
	"webhook":    AnnWebhook,
}

// rootField is the first step of a field path: "actions" of "actions[1]",
// "webhook" of "webhook.url".
func rootField(f string) string {
	if i := strings.IndexAny(f, ".["); i >= 0 {
		return f[:i]
	}
	return f
}
