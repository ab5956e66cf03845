package respond

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/evidence"
)

func sampleEvidence() *evidence.Record {
	return &evidence.Record{
		ID: "20261203T130000.000000000Z-000001-00000000", Result: evidence.ResultKept,
		SHA256: strings.Repeat("ab", 32), Type: evidence.TypeText,
		Excerpt: `-Hello, world!\n+Hacked \x1b[2J`,
		Attribution: &evidence.Attribution{Method: evidence.MethodOpenForWrite,
			Processes: []evidence.Process{{PID: 42, UID: 1000, Exe: "/bin/sh\n", Cmdline: `sh -c "echo Hacked"`}}},
	}
}

// The finding's log line, Event and webhook carry the evidence digest,
// the escaped excerpt and the attribution.
func TestEvidenceInLogEventWebhook(t *testing.T) {
	rc := newReceiver(t, false)
	k := &fakeKube{}
	e := newKubeEnv(t, Plan{Actions: []Action{ActionLog, ActionEvent, ActionWebhook}, Webhook: &WebhookConfig{URL: rc.srv.URL}}, k)
	f := changed("/srv/www/index.html", []byte("Hello, world!\n"), []byte("Hacked\n"))
	rec := sampleEvidence()
	if err := e.r.Handle(WithEvidence(t.Context(), rec), f, nil); err != nil {
		t.Fatal(err)
	}
	if err := closeWithin(t, e.r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	l := e.logs.lines(t)[0]
	for k, want := range map[string]any{
		keyEvidenceID: rec.ID, keyEvidenceSHA256: rec.SHA256, keyEvidenceResult: "kept", keyEvidenceType: "text",
		keyDiffExcerpt: rec.Excerpt, keyAttribution: "open-for-write",
	} {
		if l[k] != want {
			t.Errorf("log %s = %v, want %v", k, l[k], want)
		}
	}
	if ps, _ := l[keyProcesses].([]any); len(ps) != 1 || ps[0].(map[string]any)["pid"] != float64(42) {
		t.Errorf("log processes %v", l[keyProcesses])
	}

	k.mu.Lock()
	ev := k.events[0]
	k.mu.Unlock()
	for _, want := range []string{"evidence sha256:abababababababab (kept)", `diff: -Hello, world!\n+Hacked \x1b[2J`, `attribution: open-for-write pid 42 uid 1000 /bin/sh\n`} {
		if !strings.Contains(ev, want) {
			t.Errorf("event %q lacks %q", ev, want)
		}
	}
	if strings.ContainsAny(ev, "\n\x1b") {
		t.Errorf("event holds a raw newline or escape: %q", ev)
	}

	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d webhook requests", len(reqs))
	}
	var p Payload
	if err := json.Unmarshal(reqs[0].body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Evidence == nil || p.Evidence.SHA256 != rec.SHA256 || p.Evidence.DiffExcerpt != rec.Excerpt ||
		p.Evidence.Attribution == nil || p.Evidence.Attribution.Processes[0].PID != 42 {
		t.Errorf("webhook payload %s", reqs[0].body)
	}
}

// Without evidence, nothing of it appears.
func TestNoEvidence(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionLog}})
	if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
		t.Fatal(err)
	}
	if l := e.logs.lines(t)[0]; l[keyEvidenceID] != nil || l[keyAttribution] != nil {
		t.Errorf("evidence keys without evidence: %v", l)
	}
	if evidenceMessage(nil) != "" || evidencePayload(nil) != nil {
		t.Error("nil evidence is not empty")
	}
}
