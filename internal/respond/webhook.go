package respond

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/report"
)

// maxResponseBytes is how much of a webhook's response body is read (and
// thrown away) so that the connection can be reused.
const maxResponseBytes = 64 << 10

// Payload is the JSON document the webhook action POSTs: the finding in the
// schema of a finding of the JSON report (docs/report.md), plus the time
// podfim handled it.
type Payload struct {
	Time       time.Time    `json:"time"`
	Path       string       `json:"path"`
	PathB64    string       `json:"path_b64,omitempty"`
	Kind       compare.Kind `json:"kind"`
	Attributes []string     `json:"attributes"`
	report.Origin
	Old map[string]any `json:"old,omitempty"`
	New map[string]any `json:"new,omitempty"`
	// Evidence is what was kept of the file before the response, and who
	// may have written it (docs/drift.md).
	Evidence *EvidencePayload `json:"evidence,omitempty"`
	// Exec is the process of an execution-drift finding (kind "exec").
	Exec *ExecPayload `json:"exec,omitempty"`
}

// ExecPayload describes a drifted process (docs/drift.md).
type ExecPayload struct {
	PID     int      `json:"pid"`
	PPID    int      `json:"ppid"`
	UID     int      `json:"uid"`
	Exe     string   `json:"exe"`
	Cmdline []string `json:"cmdline"`
	// CmdlineTruncated says the command line was cut at drift.MaxCmdlineBytes.
	CmdlineTruncated bool   `json:"cmdline_truncated,omitempty"`
	Reason           string `json:"reason"`
}

// NewPayload returns the payload for f handled at t.
func NewPayload(f compare.Finding, t time.Time) Payload {
	p := Payload{Time: t.UTC(), Path: f.Path, Kind: f.Kind, Attributes: f.Attributes, Origin: report.NewOrigin(f.Origin)}
	if p.Attributes == nil {
		p.Attributes = []string{}
	}
	if !utf8.ValidString(f.Path) {
		p.PathB64 = base64.StdEncoding.EncodeToString([]byte(f.Path))
	}
	if f.Old != nil {
		p.Old = report.EntryFields(f.Old)
	}
	if f.New != nil {
		p.New = report.EntryFields(f.New)
	}
	return p
}

// delivery is one queued finding.
type delivery struct {
	path string // for logs
	body []byte
}

// webhook sends findings in the background, one at a time and in order, so
// that detection never waits for the network.
type webhook struct {
	cfg    WebhookConfig
	client *http.Client
	err    error // the client could not be set up; every delivery fails with it
	log    *slog.Logger
	m      *metrics.Sidecar

	ctx    context.Context // cancelled when Close gives up on the queue
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.RWMutex // guards closed against sending on a closed queue
	closed bool
	queue  chan delivery
}

func newWebhook(cfg WebhookConfig, log *slog.Logger, m *metrics.Sidecar) *webhook {
	w := &webhook{
		cfg: cfg, log: log, m: m,
		done:  make(chan struct{}),
		queue: make(chan delivery, cfg.QueueSize),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.client, w.err = newClient(cfg)
	if w.err != nil {
		log.Error(msgWebhookFailed, actionAttr(ActionWebhook), slog.String(keyError, w.err.Error()))
	}
	go w.run()
	return w
}

// newClient returns an HTTP client that trusts only the CA file when one is
// given, and does not follow redirects (a redirect would carry the bearer
// token to wherever the receiver points).
func newClient(cfg WebhookConfig) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := loadCAs(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("failed to load the webhook CA: %w", err)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// enqueue queues p for delivery; when the queue is full (the receiver is
// down or slow), the finding is dropped and counted as an error.
func (w *webhook) enqueue(ctx context.Context, p Payload) {
	body, err := json.Marshal(p)
	if err != nil {
		w.fail(ctx, p.Path, 0, 0, fmt.Errorf("failed to encode the finding: %w", err))
		return
	}
	w.mu.RLock()
	queued := false
	if !w.closed {
		select {
		case w.queue <- delivery{path: p.Path, body: body}:
			queued = true
		default:
		}
	}
	closed := w.closed
	w.mu.RUnlock()
	switch {
	case closed:
		w.fail(ctx, p.Path, 0, 0, errors.New("the responder is closed"))
	case !queued:
		w.fail(ctx, p.Path, 0, 0, fmt.Errorf("queue full (%d findings waiting): finding dropped", w.cfg.QueueSize))
	}
}

func (w *webhook) run() {
	defer close(w.done)
	for d := range w.queue {
		if w.ctx.Err() != nil {
			w.fail(w.ctx, d.path, 0, 0, errors.New("abandoned at shutdown"))
			continue
		}
		w.deliver(d)
	}
}

// close stops accepting findings, waits for the queue to drain until ctx
// ends, then abandons the rest.
func (w *webhook) close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		w.cancel()
		return nil
	case <-ctx.Done():
		w.cancel()
		<-w.done
		return fmt.Errorf("webhook deliveries abandoned: %w", ctx.Err())
	}
}

// deliver POSTs one finding, retrying with exponential backoff.
func (w *webhook) deliver(d delivery) {
	if w.err != nil {
		w.fail(w.ctx, d.path, 0, 0, w.err)
		return
	}
	var token string
	if w.cfg.TokenFile != "" {
		var err error
		if token, err = readToken(w.cfg.TokenFile); err != nil {
			w.fail(w.ctx, d.path, 0, 0, fmt.Errorf("failed to read the webhook token: %w", err))
			return
		}
	}
	backoff := w.cfg.Backoff
	for attempt := 1; ; attempt++ {
		status, err := w.post(d.body, token)
		if err == nil {
			w.m.Action(ActionWebhook, metrics.ResultOK)
			w.log.LogAttrs(w.ctx, slog.LevelDebug, msgWebhookSent, append(pathAttrs(d.path),
				actionAttr(ActionWebhook), resultAttr(metrics.ResultOK),
				slog.Int(keyAttempts, attempt), slog.Int(keyStatus, status))...)
			return
		}
		if attempt >= w.cfg.Attempts || !retryable(status) || w.ctx.Err() != nil {
			w.fail(w.ctx, d.path, attempt, status, err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
			w.fail(w.ctx, d.path, attempt, status, fmt.Errorf("%w (abandoned at shutdown)", err))
			return
		}
		backoff *= 2
	}
}

// post makes one attempt and returns the response status (0 when there was
// none).
func (w *webhook) post(body []byte, token string) (int, error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "podfim")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// Drop the URL from the error: receivers such as chat webhooks keep
		// their secret in the path, and the error is logged.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("webhook answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// retryable reports whether an attempt that ended with status (0: no
// response) may succeed when repeated: network errors, timeouts, server
// errors and rate limits may pass; other client errors will not.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// fail counts and logs a delivery that did not happen.
func (w *webhook) fail(ctx context.Context, path string, attempts, status int, err error) {
	w.m.Action(ActionWebhook, metrics.ResultError)
	attrs := append(pathAttrs(path),
		actionAttr(ActionWebhook), resultAttr(metrics.ResultError),
		slog.String(keyError, err.Error()))
	if attempts > 0 {
		attrs = append(attrs, slog.Int(keyAttempts, attempts))
	}
	if status > 0 {
		attrs = append(attrs, slog.Int(keyStatus, status))
	}
	w.log.LogAttrs(ctx, slog.LevelError, msgWebhookFailed, attrs...)
}
