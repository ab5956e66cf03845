package respond

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zeebo/blake3"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/server"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeTarget counts kills and records restores.
type fakeTarget struct {
	mu       sync.Mutex
	kills    int
	killErr  error
	restores []restoreCall
	writeErr error
}

type restoreCall struct {
	path    string
	want    *attr.Entry
	content []byte
}

func (f *fakeTarget) Kill() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills++
	return f.killErr
}

func (f *fakeTarget) Kills() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kills
}

func (f *fakeTarget) Root() RootWriter { return (*fakeRoot)(f) }

type fakeRoot fakeTarget

func (f *fakeRoot) Restore(path string, want *attr.Entry, content []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restores = append(f.restores, restoreCall{path, want, bytes.Clone(content)})
	return f.writeErr
}

// syncBuffer is a log sink shared with the webhook goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines parses every log line as JSON.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// withMsg returns the log lines whose message starts with prefix.
func withMsg(lines []map[string]any, prefix string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if s, _ := l["msg"].(string); strings.HasPrefix(s, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// env is a responder with its fakes.
type env struct {
	r      *Responder
	reg    *prometheus.Registry
	target *fakeTarget
	clock  *fakeClock
	logs   *syncBuffer
	kube   Kube
}

func newEnv(t *testing.T, p Plan) *env {
	t.Helper()
	return newKubeEnv(t, p, nil)
}

// newKubeEnv is newEnv with k as the Kubernetes API (nil: none).
func newKubeEnv(t *testing.T, p Plan, k Kube) *env {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	e := &env{
		reg: prometheus.NewRegistry(), target: &fakeTarget{},
		clock: newClock(), logs: &syncBuffer{}, kube: k,
	}
	m, err := metrics.NewSidecar(e.reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.r = New(p, log, m, e.target, e.kube, e.clock.Now)
	e.r.Verified()
	t.Cleanup(func() { _ = e.r.Close(t.Context()) })
	return e
}

// metric returns the value of the series of name with the given label
// pairs (a histogram's sample count); the series must exist.
func (e *env) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%q", name, labels)
	return 0
}

func (e *env) action(t *testing.T, a Action, r metrics.Result) float64 {
	t.Helper()
	return e.metric(t, "podfim_actions_total", "action", string(a), "result", string(r))
}

// regular returns a baseline entry for a regular file with content c.
func regular(path string, c []byte) *attr.Entry {
	sum := sha256.Sum256(c)
	return &attr.Entry{
		Path: path, Attrs: attr.All, Type: attr.TypeRegular, Mode: 0o644, UID: 0, GID: 0,
		Size: int64(len(c)), Inode: 12, Nlink: 1, Mtime: 1_700_000_000_000_000_000, Ctime: 1_700_000_000_000_000_000,
		Hash: sum[:],
	}
}

// changed returns a finding for path whose content changed from old to cur.
func changed(path string, old, cur []byte) compare.Finding {
	o, n := regular(path, old), regular(path, cur)
	n.Inode, n.Mtime, n.Ctime = 13, o.Mtime+1, o.Ctime+1
	return compare.Finding{Path: path, Kind: compare.Changed, Attributes: compare.Diff(o, n), Old: o, New: n}
}

func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func blake3Sum(c []byte, n int) []byte {
	h := blake3.New()
	_, _ = h.Write(c)
	out := make([]byte, n)
	_, _ = h.Digest().Read(out)
	return out
}

func anyStrings(a []any) []string {
	out := make([]string, len(a))
	for i, v := range a {
		out[i], _ = v.(string)
	}
	return out
}

// ready is what /readyz answers for the responder's ledger.
func (e *env) ready() (bool, []string) { return server.Ready(e.r) }

// restarted is what the sidecar tells the responder when the app container
// starts again and its first full check completes.
func (e *env) restarted() {
	e.r.TargetChanged(true)
	e.r.Verified()
}
