package respond

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podfim/podfim/internal/metrics"
)

// Action is one way of responding to a finding. It is metrics.Action, so
// an action is the label value of podfim_actions_total as it is: the list
// of actions is kept once, in package metrics, and this package says what
// each one does.
type Action = metrics.Action

// Actions. event, quarantine and delete need the Kubernetes API (a Kube);
// without it they are counted as errors and everything else goes on.
const (
	ActionLog     = metrics.ActionLog     // one JSON log line per finding
	ActionMetric  = metrics.ActionMetric  // podfim_findings_total{kind,origin}
	ActionUnready = metrics.ActionUnready // /readyz fails until the violation is resolved
	ActionRestore = metrics.ActionRestore // write the baseline's content and attributes back
	ActionKill    = metrics.ActionKill    // SIGKILL the app container's processes, bounded
	ActionWebhook = metrics.ActionWebhook // POST the finding as JSON, in the background
	// ActionEvent posts a Kubernetes Event on the pod for the finding and,
	// once it is in the plan, for what the other actions did.
	ActionEvent = metrics.ActionEvent
	// ActionQuarantine labels the pod podfim.io/quarantined=true (and
	// annotates why) until no violation is open.
	ActionQuarantine = metrics.ActionQuarantine
	// ActionDelete deletes the pod so that its controller starts a fresh
	// one; guarded against delete loops (DeleteMinAge, a controller).
	ActionDelete = metrics.ActionDelete
)

// Defaults of a Plan and a WebhookConfig, used for zero fields.
const (
	DefaultKillLimit       = 3
	DefaultKillWindow      = 10 * time.Minute
	DefaultRestoreMaxBytes = 1 << 20
	DefaultWebhookTimeout  = 5 * time.Second
	DefaultWebhookAttempts = 3
	DefaultWebhookBackoff  = 200 * time.Millisecond
	DefaultWebhookQueue    = 256
	// DefaultDeleteMinAge is the youngest pod the delete action deletes: a
	// replacement tampered with at once is not deleted at once again (a
	// loop), it gets the Escalate actions.
	DefaultDeleteMinAge = 5 * time.Minute
)

// maxSecretFileBytes bounds what is read from a token or CA file.
const maxSecretFileBytes = 1 << 20

// Plan says how to respond to findings. Zero fields take the defaults above;
// Escalate defaults to [unready].
type Plan struct {
	// Actions run for every finding, in this order.
	Actions []Action
	// KillLimit is the most kills within KillWindow (a sliding window); once
	// it is reached, the Escalate actions run instead of a kill.
	KillLimit  int
	KillWindow time.Duration
	// Escalate runs instead of kill once the kill limit is reached, and
	// instead of delete when its guard refuses (actions
	// already in Actions are not run twice). It may not contain kill.
	Escalate []Action
	// Webhook configures the webhook action; required when it is used.
	Webhook *WebhookConfig
	// RestoreMaxBytes is the largest file restore writes back. The caller
	// keeps a file's content for restore only up to this size.
	RestoreMaxBytes int64
	// DeleteMinAge is the youngest pod delete deletes (the guard against
	// delete loops); a younger one gets the Escalate actions instead.
	DeleteMinAge time.Duration
}

// WebhookConfig configures the webhook action. Zero fields take the
// defaults.
type WebhookConfig struct {
	URL       string        // http or https, no credentials in it
	Timeout   time.Duration // per attempt
	Attempts  int           // attempts per finding, retried with exponential backoff
	Backoff   time.Duration // wait before the second attempt; doubled each time
	QueueSize int           // findings waiting for delivery; beyond it they are dropped and counted as errors
	// TokenFile holds a bearer token, read at each delivery so that a rotated
	// (projected) token is picked up.
	TokenFile string
	// CAFile holds the PEM certificates that the https server's certificate
	// must chain to, instead of the system roots.
	CAFile string
}

// Validate checks the plan before anything starts. Each problem names its
// field (actions[1], killLimit, webhook.url, ...), so that a caller that got
// the plan from elsewhere (the webhook's pod annotations) can say where the
// problem came from without reading the message. It reads the webhook's CA
// and token files to check them. Nil when the plan is valid.
func (p Plan) Validate() field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateList(field.NewPath("actions"), p.Actions, false)...)
	errs = append(errs, validateList(field.NewPath("escalate"), p.Escalate, true)...)
	if p.KillLimit < 0 {
		errs = append(errs, field.Invalid(field.NewPath("killLimit"), p.KillLimit, "is negative"))
	}
	if p.KillWindow < 0 {
		errs = append(errs, field.Invalid(field.NewPath("killWindow"), p.KillWindow.String(), "is negative"))
	}
	if p.RestoreMaxBytes < 0 {
		errs = append(errs, field.Invalid(field.NewPath("restoreMaxBytes"), p.RestoreMaxBytes, "is negative"))
	}
	if p.DeleteMinAge < 0 {
		errs = append(errs, field.Invalid(field.NewPath("deleteMinAge"), p.DeleteMinAge.String(), "is negative"))
	}
	if p.Uses(ActionWebhook) {
		if p.Webhook == nil {
			errs = append(errs, field.Required(field.NewPath("webhook"), "the webhook action needs a webhook URL"))
		} else {
			errs = append(errs, p.Webhook.validate(field.NewPath("webhook"))...)
		}
	}
	return errs
}

func validateList(fld *field.Path, list []Action, escalate bool) field.ErrorList {
	var errs field.ErrorList
	if !escalate && len(list) == 0 {
		errs = append(errs, field.Required(fld, "at least one action is required"))
	}
	seen := map[Action]bool{}
	for i, a := range list {
		switch {
		case !known(a):
			errs = append(errs, field.NotSupported(fld.Index(i), string(a), metrics.Actions()))
		case seen[a]:
			errs = append(errs, field.Duplicate(fld.Index(i), string(a)))
		case escalate && a == ActionKill:
			errs = append(errs, field.Forbidden(fld.Index(i), "kill cannot be an escalation of kill"))
		}
		seen[a] = true
	}
	return errs
}

func (w *WebhookConfig) validate(fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	u, err := url.Parse(w.URL)
	urlPath := fld.Child("url")
	switch {
	case w.URL == "":
		errs = append(errs, field.Required(urlPath, ""))
	case err != nil:
		errs = append(errs, field.Invalid(urlPath, w.URL, err.Error()))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, field.Invalid(urlPath, w.URL, fmt.Sprintf("scheme %q is not http or https", u.Scheme)))
	case u.Host == "":
		errs = append(errs, field.Invalid(urlPath, w.URL, "no host"))
	case u.User != nil:
		// It would be logged with every failure; use tokenFile instead.
		// The value is not repeated: it holds the credentials.
		errs = append(errs, field.Forbidden(urlPath, "must not hold credentials (use tokenFile)"))
	}
	if w.Timeout < 0 {
		errs = append(errs, field.Invalid(fld.Child("timeout"), w.Timeout.String(), "is negative"))
	}
	if w.Attempts < 0 {
		errs = append(errs, field.Invalid(fld.Child("attempts"), w.Attempts, "is negative"))
	}
	if w.Backoff < 0 {
		errs = append(errs, field.Invalid(fld.Child("backoff"), w.Backoff.String(), "is negative"))
	}
	if w.QueueSize < 0 {
		errs = append(errs, field.Invalid(fld.Child("queueSize"), w.QueueSize, "is negative"))
	}
	if w.CAFile != "" {
		if err == nil && u.Scheme != "https" {
			errs = append(errs, field.Forbidden(fld.Child("caFile"), "requires an https url"))
		}
		if _, err := loadCAs(w.CAFile); err != nil {
			errs = append(errs, field.Invalid(fld.Child("caFile"), w.CAFile, err.Error()))
		}
	}
	if w.TokenFile != "" {
		if _, err := readToken(w.TokenFile); err != nil {
			errs = append(errs, field.Invalid(fld.Child("tokenFile"), w.TokenFile, err.Error()))
		}
	}
	return errs
}

// ParseActions reads action names from flag values or an annotation: each
// item may itself be a comma-separated list; blanks are trimmed and empty
// items dropped. It does not check the names: Plan.Validate does, naming
// the position of each bad one.
func ParseActions(items ...string) []Action {
	var out []Action
	for _, item := range items {
		for name := range strings.SplitSeq(item, ",") {
			if name = strings.TrimSpace(name); name != "" {
				out = append(out, Action(name))
			}
		}
	}
	return out
}

// FormatActions writes actions as the comma-separated list ParseActions
// reads.
func FormatActions(list []Action) string {
	names := make([]string, len(list))
	for i, a := range list {
		names[i] = string(a)
	}
	return strings.Join(names, ",")
}

// apiActions are the actions that need the Kubernetes API (a Kube).
var apiActions = [...]Action{ActionEvent, ActionQuarantine, ActionDelete}

// NeedsAPI reports whether an action the plan may run (Uses) needs the
// Kubernetes API: the sidecar warns when it has none, and the admission
// webhook mounts the sidecar's service-account token only then.
func (p Plan) NeedsAPI() bool {
	for _, a := range apiActions {
		if p.Uses(a) {
			return true
		}
	}
	return false
}

// withDefaults fills the zero fields.
func (p Plan) withDefaults() Plan {
	if p.KillLimit == 0 {
		p.KillLimit = DefaultKillLimit
	}
	if p.KillWindow == 0 {
		p.KillWindow = DefaultKillWindow
	}
	if len(p.Escalate) == 0 {
		p.Escalate = []Action{ActionUnready}
	}
	if p.RestoreMaxBytes == 0 {
		p.RestoreMaxBytes = DefaultRestoreMaxBytes
	}
	// DeleteMinAge 0 is a valid choice (no age guard; tests, or pods that
	// must go at once): the CLI's flag carries the default.
	if p.Webhook != nil {
		w := *p.Webhook
		if w.Timeout == 0 {
			w.Timeout = DefaultWebhookTimeout
		}
		if w.Attempts == 0 {
			w.Attempts = DefaultWebhookAttempts
		}
		if w.Backoff == 0 {
			w.Backoff = DefaultWebhookBackoff
		}
		if w.QueueSize == 0 {
			w.QueueSize = DefaultWebhookQueue
		}
		p.Webhook = &w
	}
	return p
}

// Uses reports whether a may run: in Actions, or in Escalate when kill or
// delete (whose fallback it is) is an action.
func (p Plan) Uses(a Action) bool {
	for _, x := range p.Actions {
		if x == a {
			return true
		}
	}
	if !p.has(ActionKill) && !p.has(ActionDelete) {
		return false
	}
	for _, x := range p.Escalate {
		if x == a {
			return true
		}
	}
	return false
}

func (p Plan) has(a Action) bool {
	for _, x := range p.Actions {
		if x == a {
			return true
		}
	}
	return false
}

func known(a Action) bool { return slices.Contains(metrics.Actions(), a) }

// readSmallFile reads at most maxSecretFileBytes of a file.
func readSmallFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %q: %w", name, err)
	}
	if len(b) > maxSecretFileBytes {
		return nil, fmt.Errorf("%q is larger than %d bytes", name, maxSecretFileBytes)
	}
	return b, nil
}

func loadCAs(name string) (*x509.CertPool, error) {
	pem, err := readSmallFile(name)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %q", name)
	}
	return pool, nil
}

func readToken(name string) (string, error) {
	b, err := readSmallFile(name)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%q is empty", name)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("%q holds more than one line", name)
	}
	return tok, nil
}
