package respond

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
)

// Action is one way of responding to a finding.
type Action string

// Actions. event, quarantine and delete need the Kubernetes API (a Kube);
// without it they are counted as errors and everything else goes on.
const (
	ActionLog     Action = "log"     // one JSON log line per finding
	ActionMetric  Action = "metric"  // podfim_findings_total{kind}
	ActionUnready Action = "unready" // /readyz fails until the violation is resolved
	ActionRestore Action = "restore" // write the baseline's content and attributes back
	ActionKill    Action = "kill"    // SIGKILL the app container's processes, bounded
	ActionWebhook Action = "webhook" // POST the finding as JSON, in the background
	// ActionEvent posts a Kubernetes Event on the pod for the finding and,
	// once it is in the plan, for what the other actions did.
	ActionEvent Action = "event"
	// ActionQuarantine labels the pod podfim.io/quarantined=true (and
	// annotates why) until no violation is open.
	ActionQuarantine Action = "quarantine"
	// ActionDelete deletes the pod so that its controller starts a fresh
	// one; guarded against delete loops (DeleteMinAge, a controller).
	ActionDelete Action = "delete"
)

// actions lists the implemented actions in the order error messages name them.
var actions = [...]Action{ActionLog, ActionMetric, ActionUnready, ActionRestore, ActionKill, ActionWebhook, ActionEvent, ActionQuarantine, ActionDelete}

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

// Validate checks the plan before anything starts, naming the field of every
// problem. It reads the webhook's CA and token files to check them.
func (p Plan) Validate() error {
	var errs []error
	errs = append(errs, validateList("actions", p.Actions, false)...)
	errs = append(errs, validateList("escalate", p.Escalate, true)...)
	if p.KillLimit < 0 {
		errs = append(errs, fmt.Errorf("killLimit: %d is negative", p.KillLimit))
	}
	if p.KillWindow < 0 {
		errs = append(errs, fmt.Errorf("killWindow: %s is negative", p.KillWindow))
	}
	if p.RestoreMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("restoreMaxBytes: %d is negative", p.RestoreMaxBytes))
	}
	if p.DeleteMinAge < 0 {
		errs = append(errs, fmt.Errorf("deleteMinAge: %s is negative", p.DeleteMinAge))
	}
	if p.Uses(ActionWebhook) {
		if p.Webhook == nil {
			errs = append(errs, errors.New("webhook: required by the webhook action"))
		} else {
			errs = append(errs, p.Webhook.validate()...)
		}
	}
	return errors.Join(errs...)
}

func validateList(field string, list []Action, escalate bool) []error {
	var errs []error
	if !escalate && len(list) == 0 {
		errs = append(errs, fmt.Errorf("%s: at least one action is required", field))
	}
	seen := map[Action]bool{}
	for i, a := range list {
		switch {
		case !known(a):
			errs = append(errs, fmt.Errorf("%s[%d]: unknown action %q (known: %s)", field, i, a, knownNames()))
		case seen[a]:
			errs = append(errs, fmt.Errorf("%s[%d]: duplicate action %q", field, i, a))
		case escalate && a == ActionKill:
			errs = append(errs, fmt.Errorf("%s[%d]: kill cannot be an escalation of kill", field, i))
		}
		seen[a] = true
	}
	return errs
}

func (w *WebhookConfig) validate() []error {
	var errs []error
	u, err := url.Parse(w.URL)
	switch {
	case w.URL == "":
		errs = append(errs, errors.New("webhook.url: required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("webhook.url: %w", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("webhook.url: scheme %q is not http or https", u.Scheme))
	case u.Host == "":
		errs = append(errs, errors.New("webhook.url: no host"))
	case u.User != nil:
		// It would be logged with every failure; use tokenFile instead.
		errs = append(errs, errors.New("webhook.url: must not hold credentials (use tokenFile)"))
	}
	if w.Timeout < 0 {
		errs = append(errs, fmt.Errorf("webhook.timeout: %s is negative", w.Timeout))
	}
	if w.Attempts < 0 {
		errs = append(errs, fmt.Errorf("webhook.attempts: %d is negative", w.Attempts))
	}
	if w.Backoff < 0 {
		errs = append(errs, fmt.Errorf("webhook.backoff: %s is negative", w.Backoff))
	}
	if w.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("webhook.queueSize: %d is negative", w.QueueSize))
	}
	if w.CAFile != "" {
		if err == nil && u.Scheme != "https" {
			errs = append(errs, errors.New("webhook.caFile: requires an https url"))
		}
		if _, err := loadCAs(w.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("webhook.caFile: %w", err))
		}
	}
	if w.TokenFile != "" {
		if _, err := readToken(w.TokenFile); err != nil {
			errs = append(errs, fmt.Errorf("webhook.tokenFile: %w", err))
		}
	}
	return errs
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

func known(a Action) bool {
	for _, k := range actions {
		if k == a {
			return true
		}
	}
	return false
}

func knownNames() string {
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

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
