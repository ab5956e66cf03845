package respond

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/origin"
)

func TestValidate(t *testing.T) {
	ok := []Plan{
		{Actions: []Action{ActionLog}},
		{Actions: []Action{ActionLog, ActionMetric, ActionUnready, ActionRestore, ActionKill}, KillLimit: 5, KillWindow: time.Hour,
			Escalate: []Action{ActionUnready, ActionLog}, RestoreMaxBytes: 10},
		{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "http://127.0.0.1:8080/hook"}},
		{Actions: []Action{ActionKill}, Escalate: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "https://example.invalid/x"}},
	}
	for i, p := range ok {
		if errs := p.Validate(); errs != nil {
			t.Errorf("plan %d: %v", i, errs)
		}
	}
	for _, tc := range []struct {
		p    Plan
		want string
	}{
		{Plan{}, "actions: Required value: at least one action is required"},
		{Plan{Actions: []Action{"kil"}}, `actions[0]: Unsupported value: "kil": supported values: "log", "metric", "unready", "restore", "kill", "webhook", "event", "quarantine", "delete"`},
		{Plan{Actions: []Action{ActionDelete}, DeleteMinAge: -time.Second}, `deleteMinAge: Invalid value: "-1s": is negative`},
		{Plan{Actions: []Action{ActionLog, ActionLog}}, `actions[1]: Duplicate value: "log"`},
		{Plan{Actions: []Action{ActionKill}, Escalate: []Action{ActionKill}}, "escalate[0]: Forbidden: kill cannot be an escalation of kill"},
		{Plan{Actions: []Action{ActionKill}, Escalate: []Action{"page"}}, `escalate[0]: Unsupported value: "page"`},
		{Plan{Actions: []Action{ActionKill}, KillLimit: -1}, "killLimit: Invalid value: -1: is negative"},
		{Plan{Actions: []Action{ActionKill}, KillWindow: -time.Second}, `killWindow: Invalid value: "-1s": is negative`},
		{Plan{Actions: []Action{ActionRestore}, RestoreMaxBytes: -1}, "restoreMaxBytes: Invalid value: -1: is negative"},
		{Plan{Actions: []Action{ActionWebhook}}, "webhook: Required value: the webhook action needs a webhook URL"},
		{Plan{Actions: []Action{ActionKill}, Escalate: []Action{ActionWebhook}}, "webhook: Required value"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{}}, "webhook.url: Required value"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "ftp://x/"}}, `webhook.url: Invalid value: "ftp://x/": scheme "ftp" is not http or https`},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "http:///x"}}, `webhook.url: Invalid value: "http:///x": no host`},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "https://u:p@host/"}}, "webhook.url: Forbidden: must not hold credentials"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "http://h/", Timeout: -1}}, "webhook.timeout"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "http://h/", Attempts: -1}}, "webhook.attempts"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "http://h/", Backoff: -1}}, "webhook.backoff"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "http://h/", QueueSize: -1}}, "webhook.queueSize"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "http://h/", CAFile: "/nonexistent"}}, "webhook.caFile: Forbidden: requires an https url"},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "https://h/", CAFile: "/nonexistent"}}, `webhook.caFile: Invalid value: "/nonexistent": open /nonexistent`},
		{Plan{Actions: []Action{ActionWebhook}, Webhook: &WebhookConfig{URL: "https://h/", TokenFile: "/nonexistent"}}, `webhook.tokenFile: Invalid value: "/nonexistent": open /nonexistent`},
	} {
		err := tc.p.Validate().ToAggregate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.p, err, tc.want)
		}
	}
}

// TestValidateFields: every problem names its field, so that the webhook
// maps it to the annotation that set it without reading the message; the
// credentials of a webhook URL are not repeated in the error.
func TestValidateFields(t *testing.T) {
	errs := Plan{Actions: []Action{"x", ActionWebhook}, Escalate: []Action{ActionKill}, KillLimit: -1, KillWindow: -1,
		Webhook: &WebhookConfig{URL: "https://user:secret@h/"}}.Validate()
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	if want := []string{"actions[0]", "escalate[0]", "killLimit", "killWindow", "webhook.url"}; !slices.Equal(fields, want) {
		t.Errorf("fields %v, want %v", fields, want)
	}
	if strings.Contains(errs.ToAggregate().Error(), "secret") {
		t.Errorf("the error repeats the URL's credentials: %v", errs)
	}
}

func TestParseActions(t *testing.T) {
	got := ParseActions("log, kill,,", " ", "event")
	if want := []Action{ActionLog, ActionKill, ActionEvent}; !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	if s := FormatActions(got); s != "log,kill,event" || !slices.Equal(ParseActions(s), got) {
		t.Errorf("FormatActions: %q", s)
	}
	if ParseActions() != nil || ParseActions(" , ") != nil {
		t.Error("no names must give nil")
	}
}

func TestNeedsAPI(t *testing.T) {
	for _, tc := range []struct {
		p    Plan
		want bool
	}{
		{Plan{Actions: []Action{ActionLog, ActionMetric, ActionUnready, ActionRestore, ActionKill, ActionWebhook}}, false},
		{Plan{Actions: []Action{ActionLog, ActionEvent}}, true},
		{Plan{Actions: []Action{ActionQuarantine}}, true},
		{Plan{Actions: []Action{ActionDelete}}, true},
		// Escalate runs only instead of kill or delete.
		{Plan{Actions: []Action{ActionLog}, Escalate: []Action{ActionQuarantine}}, false},
		{Plan{Actions: []Action{ActionKill}, Escalate: []Action{ActionQuarantine}}, true},
	} {
		if got := tc.p.NeedsAPI(); got != tc.want {
			t.Errorf("%v / %v: NeedsAPI %v, want %v", tc.p.Actions, tc.p.Escalate, got, tc.want)
		}
	}
}

func TestLogLine(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionLog}})
	f := changed("/srv/www/index.html", []byte("Hello, world!\n"), []byte("Hacked\n"))
	f.Origin = origin.Origin{Kind: origin.Image, Layer: 2, LayerDigest: "sha256:0a"}
	if err := e.r.Handle(t.Context(), f, nil); err != nil {
		t.Fatal(err)
	}
	added := compare.Finding{Path: "/tmp/\xff\n", Kind: compare.Added, New: regular("/tmp/\xff\n", []byte("x")),
		Origin: origin.Origin{Kind: origin.Volume, Mount: "/tmp/\xff"}}
	if err := e.r.Handle(t.Context(), added, nil); err != nil {
		t.Fatal(err)
	}
	lines := e.logs.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per finding: %v", len(lines), lines)
	}
	l := lines[0]
	for k, want := range map[string]any{
		"msg": "integrity violation", "level": "WARN", keyPath: "/srv/www/index.html", keyKind: "changed",
		keyOrigin: "image", keyLayer: float64(2), keyLayerDig: "sha256:0a",
		keyOldSHA256: hexSHA256("Hello, world!\n"),
		keyNewSHA256: hexSHA256("Hacked\n"),
	} {
		if l[k] != want {
			t.Errorf("%s = %v, want %v", k, l[k], want)
		}
	}
	if got := l[keyAttributes].([]any); !slices.Equal(anyStrings(got), []string{"size", "inode", "mtime", "ctime", "sha256"}) {
		t.Errorf("attributes %v", got)
	}
	if old := l[keyOld].(map[string]any); old["mode"] != "0644" || old["size"] != float64(14) {
		t.Errorf("old %v", old)
	}
	if _, ok := l[keyPathB64]; ok {
		t.Error("path_b64 for a UTF-8 path")
	}
	l = lines[1]
	if l[keyKind] != "added" || l[keyPathB64] != "L3RtcC//Cg==" || l[keyOld] != nil || l[keyOldSHA256] != nil {
		t.Errorf("added finding: %v", l)
	}
	if l[keyOrigin] != "volume" || l[keyMountB64] != "L3RtcC//" || l[keyLayer] != nil {
		t.Errorf("added finding's origin: %v, want volume with mount_b64", l)
	}
	if attrs := l[keyAttributes].([]any); len(attrs) != 0 {
		t.Errorf("added attributes %v, want []", attrs)
	}
	if v := e.action(t, ActionLog, metrics.ResultOK); v != 2 {
		t.Errorf("log ok = %v", v)
	}
}

func TestMetricAction(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionMetric}})
	ctx := WithEventTime(t.Context(), e.clock.Now())
	e.clock.Add(3 * time.Millisecond)
	a := changed("/a", []byte("a"), []byte("b"))
	a.Origin = origin.Origin{Kind: origin.Image, Layer: 1}
	for _, f := range []compare.Finding{
		a,
		{Path: "/b", Kind: compare.Removed, Old: regular("/b", nil), Origin: origin.Origin{Kind: origin.Volume, Mount: "/b"}},
		{Path: "/c", Kind: compare.Removed, Old: regular("/c", nil), Origin: origin.Origin{Kind: origin.Volume, Mount: "/c"}},
	} {
		if err := e.r.Handle(ctx, f, nil); err != nil {
			t.Fatal(err)
		}
	}
	for series, want := range map[[2]string]float64{
		{"added", "container"}: 0, {"removed", "volume"}: 2, {"changed", "image"}: 1, {"removed", "image"}: 0,
	} {
		if v := e.metric(t, "podfim_findings_total", "kind", series[0], "origin", series[1]); v != want {
			t.Errorf("findings %s from %s = %v, want %v", series[0], series[1], v, want)
		}
	}
	if v := e.action(t, ActionMetric, metrics.ResultOK); v != 3 {
		t.Errorf("metric ok = %v", v)
	}
	if v := e.metric(t, "podfim_violations_open"); v != 3 {
		t.Errorf("violations open = %v", v)
	}
	if v := e.metric(t, "podfim_response_latency_seconds"); v != 3 {
		t.Errorf("latency observations = %v", v)
	}
	if len(e.logs.lines(t)) != 0 {
		t.Error("log lines without the log action")
	}
}

func TestUnreadyResolved(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionUnready}})
	for _, p := range []string{"/etc/passwd", "/bin/sh"} {
		if err := e.r.Handle(t.Context(), changed(p, []byte("a"), []byte("b")), nil); err != nil {
			t.Fatal(err)
		}
	}
	ok, reasons := e.ready()
	if ok || !slices.Equal(reasons, []string{"integrity violation: /bin/sh", "integrity violation: /etc/passwd"}) {
		t.Fatalf("ready %v %q", ok, reasons)
	}
	if v := e.metric(t, "podfim_violations_open"); v != 2 {
		t.Errorf("violations open = %v", v)
	}
	e.r.Resolved("/etc/passwd")
	if ok, _ := e.ready(); ok {
		t.Error("ready with one violation still open")
	}
	e.r.Resolved("/bin/sh")
	if ok, reasons := e.ready(); !ok {
		t.Errorf("not ready after every violation resolved: %q", reasons)
	}
	if v := e.metric(t, "podfim_violations_open"); v != 0 {
		t.Errorf("violations open = %v", v)
	}
	if v := e.action(t, ActionUnready, metrics.ResultOK); v != 2 {
		t.Errorf("unready ok = %v", v)
	}
}

func TestRestore(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionRestore}, RestoreMaxBytes: 16})
	orig := []byte("Hello, world!\n")
	f := changed("/srv/www/index.html", orig, []byte("Hacked\n"))
	f.Old.Xattrs = []attr.Xattr{{Name: "user.x", Value: []byte("1")}}
	if err := e.r.Handle(t.Context(), f, orig); err != nil {
		t.Fatal(err)
	}
	removed := compare.Finding{Path: "/etc/motd", Kind: compare.Removed, Old: regular("/etc/motd", []byte("hi"))}
	if err := e.r.Handle(t.Context(), removed, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	empty := compare.Finding{Path: "/etc/empty", Kind: compare.Removed, Old: regular("/etc/empty", nil)}
	if err := e.r.Handle(t.Context(), empty, nil); err != nil {
		t.Fatal(err)
	}
	rs := e.target.restores
	if len(rs) != 3 {
		t.Fatalf("%d restores, want 3", len(rs))
	}
	if rs[0].path != f.Path || rs[0].want != f.Old || string(rs[0].content) != string(orig) {
		t.Errorf("restore %q %p %q, want %q %p %q", rs[0].path, rs[0].want, rs[0].content, f.Path, f.Old, orig)
	}
	if rs[1].path != "/etc/motd" || string(rs[1].content) != "hi" {
		t.Errorf("restore of a removed file: %+v", rs[1])
	}
	if rs[2].path != "/etc/empty" || rs[2].content == nil || len(rs[2].content) != 0 {
		t.Errorf("restore of an empty file: %+v", rs[2])
	}
	if v := e.action(t, ActionRestore, metrics.ResultOK); v != 3 {
		t.Errorf("restore ok = %v", v)
	}

	// Skipped: nothing kept, too large, added, not a regular file.
	dir := &attr.Entry{Path: "/etc", Attrs: attr.All, Type: attr.TypeDir, Mode: 0o755}
	big := []byte(strings.Repeat("x", 17))
	for _, tc := range []struct {
		f       compare.Finding
		content []byte
	}{
		{changed("/a", orig, []byte("b")), nil},
		{changed("/big", big, []byte("b")), big},
		{compare.Finding{Path: "/new", Kind: compare.Added, New: regular("/new", orig)}, orig},
		{compare.Finding{Path: "/etc", Kind: compare.Removed, Old: dir}, []byte{}},
	} {
		if err := e.r.Handle(t.Context(), tc.f, tc.content); err != nil {
			t.Errorf("%s: %v", tc.f.Path, err)
		}
	}
	if len(e.target.restores) != 3 {
		t.Errorf("skipped restores reached the RootWriter: %+v", e.target.restores[3:])
	}
	if v := e.action(t, ActionRestore, metrics.ResultSkipped); v != 4 {
		t.Errorf("restore skipped = %v", v)
	}
	if n := len(withMsg(e.logs.lines(t), msgActionSkipped)); n != 4 {
		t.Errorf("%d skip lines, want 4", n)
	}

	// Errors: content that is not the baseline's, and a failing writer.
	if err := e.r.Handle(t.Context(), changed("/c", orig, []byte("b")), []byte("Hello, World!\n")); err == nil ||
		!strings.Contains(err.Error(), "does not match the baseline's sha256") {
		t.Errorf("restore of the wrong content: %v", err)
	}
	e.target.writeErr = errors.New("symlink in path")
	if err := e.r.Handle(t.Context(), changed("/d", orig, []byte("b")), orig); err == nil ||
		!strings.Contains(err.Error(), "symlink in path") {
		t.Errorf("failing writer: %v", err)
	}
	if v := e.action(t, ActionRestore, metrics.ResultError); v != 2 {
		t.Errorf("restore error = %v", v)
	}
	if len(e.target.restores) != 4 {
		t.Errorf("%d restores: wrong content reached the writer", len(e.target.restores))
	}
}

func TestCheckContentHashes(t *testing.T) {
	c := []byte("content")
	for _, tc := range []struct {
		alg  attr.Set
		hash string
	}{
		{attr.SHA512, "b2d1d285b5199c85f988d03649c37e44fd3dde01e5d69c50fef90651962f48110e9340b60d49a479c4c0b53f5f07d690686dd87d2481937a512e8b85ee7c617f"},
		{attr.BLAKE3, "3fb7a5c3a6bac1b4b7d04a2dc9b5c6bcb76e3b0e4d7b6a6fa03e1d6c0a9f1d3a"},
	} {
		e := &attr.Entry{Attrs: attr.Type | tc.alg, Type: attr.TypeRegular, Hash: mustHex(tc.hash)}
		err := checkContent(e, c)
		if tc.alg == attr.SHA512 && err != nil {
			t.Errorf("sha512: %v", err)
		}
		if tc.alg == attr.BLAKE3 && err == nil {
			t.Error("blake3: a wrong hash passed")
		}
	}
	// The published BLAKE3 vector for the empty input.
	e := &attr.Entry{Attrs: attr.Type | attr.BLAKE3, Type: attr.TypeRegular,
		Hash: mustHex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")}
	if err := checkContent(e, []byte{}); err != nil {
		t.Errorf("blake3 of nothing: %v", err)
	}
	// The right blake3 sum, at the default and at an extended length.
	for _, n := range []int{32, 64} {
		e := &attr.Entry{Attrs: attr.Type | attr.BLAKE3, Type: attr.TypeRegular, Hash: blake3Sum(c, n)}
		if err := checkContent(e, c); err != nil {
			t.Errorf("blake3 (%d bytes): %v", n, err)
		}
	}
}

func TestKillEscalation(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionKill}, KillLimit: 3, KillWindow: 10 * time.Minute})
	f := changed("/srv/www/index.html", []byte("a"), []byte("b"))
	ctx := t.Context()
	start := e.clock.Now()
	for i := 1; i <= 3; i++ {
		if err := e.r.Handle(ctx, f, nil); err != nil {
			t.Fatal(err)
		}
		if k := e.target.Kills(); k != i {
			t.Fatalf("after finding %d: %d kills", i, k)
		}
		e.clock.Add(time.Minute)
		e.restarted()
	}
	if ok, _ := e.ready(); !ok {
		t.Fatal("unready before escalation")
	}
	// Fourth restart, still modified: the limit is reached.
	for range 2 {
		if err := e.r.Handle(ctx, f, nil); err != nil {
			t.Fatal(err)
		}
		e.restarted()
	}
	if k := e.target.Kills(); k != 3 {
		t.Fatalf("%d kills beyond the limit", k)
	}
	if ok, reasons := e.ready(); ok || !slices.Equal(reasons, []string{"integrity violation: /srv/www/index.html"}) {
		t.Errorf("escalation to unready: ready %v %q", ok, reasons)
	}
	limit := withMsg(e.logs.lines(t), msgKillLimit)
	if len(limit) != 1 {
		t.Fatalf("%d kill limit lines, want 1 per episode", len(limit))
	}
	wantMsg := "kill limit reached: 3 kills in 10m0s; the restarted container is still modified " +
		"(tampered volume or a runtime that reuses the container?); escalating to [unready]"
	if limit[0]["msg"] != wantMsg || limit[0][keyPath] != f.Path || limit[0][keyKills] != float64(3) {
		t.Errorf("kill limit line: %v", limit[0])
	}
	if v := e.action(t, ActionKill, metrics.ResultOK); v != 3 {
		t.Errorf("kill ok = %v", v)
	}
	if v := e.action(t, ActionKill, metrics.ResultSkipped); v != 2 {
		t.Errorf("kill skipped = %v", v)
	}
	if v := e.action(t, ActionUnready, metrics.ResultOK); v != 2 {
		t.Errorf("unready ok = %v", v)
	}

	// The window slides: once the first kill is 10 minutes old, one more
	// kill is allowed, then the limit holds again.
	e.clock.Add(start.Add(10*time.Minute + time.Nanosecond).Sub(e.clock.Now()))
	if err := e.r.Handle(ctx, f, nil); err != nil {
		t.Fatal(err)
	}
	if k := e.target.Kills(); k != 4 {
		t.Fatalf("after the window: %d kills, want 4", k)
	}
	e.restarted()
	if err := e.r.Handle(ctx, f, nil); err != nil {
		t.Fatal(err)
	}
	if k := e.target.Kills(); k != 4 {
		t.Fatalf("second kill after the window slid by one: %d kills", k)
	}
	if n := len(withMsg(e.logs.lines(t), msgKillLimit)); n != 2 {
		t.Errorf("%d kill limit lines, want a new one for the new episode", n)
	}

	// After a whole quiet window the full budget is back.
	e.clock.Add(time.Hour)
	for i := 5; i <= 7; i++ {
		e.restarted()
		if err := e.r.Handle(ctx, f, nil); err != nil {
			t.Fatal(err)
		}
		if k := e.target.Kills(); k != i {
			t.Fatalf("after a quiet window: %d kills, want %d", k, i)
		}
	}
}

// TestKillCoalesced checks that the findings of one scan cause one kill, not
// one each.
func TestKillCoalesced(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionKill}})
	for _, p := range []string{"/a", "/b", "/c", "/d"} {
		if err := e.r.Handle(t.Context(), changed(p, []byte("a"), []byte("b")), nil); err != nil {
			t.Fatal(err)
		}
	}
	if k := e.target.Kills(); k != 1 {
		t.Fatalf("%d kills for one scan", k)
	}
	if v := e.action(t, ActionKill, metrics.ResultSkipped); v != 3 {
		t.Errorf("kill skipped = %v", v)
	}
	// No restart reported: after the hold-off a kill is tried again.
	e.clock.Add(killHoldoff)
	if err := e.r.Handle(t.Context(), changed("/a", []byte("a"), []byte("b")), nil); err != nil {
		t.Fatal(err)
	}
	if k := e.target.Kills(); k != 2 {
		t.Fatalf("%d kills after the hold-off", k)
	}
}

func TestKillError(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionLog, ActionKill, ActionMetric}})
	e.target.killErr = errors.New("no such process")
	f := changed("/a", []byte("a"), []byte("b"))
	err := e.r.Handle(t.Context(), f, nil)
	if err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Fatalf("Handle: %v", err)
	}
	if v := e.action(t, ActionKill, metrics.ResultError); v != 1 {
		t.Errorf("kill error = %v", v)
	}
	// The actions after the failed one still ran.
	if v := e.action(t, ActionMetric, metrics.ResultOK); v != 1 {
		t.Errorf("metric ok = %v", v)
	}
	// A failed kill is not pending: the next finding tries again.
	if err := e.r.Handle(t.Context(), f, nil); err == nil {
		t.Error("second failing kill: no error")
	}
	if k := e.target.Kills(); k != 2 {
		t.Errorf("%d kill attempts", k)
	}
	if n := len(withMsg(e.logs.lines(t), msgActionFailed)); n != 2 {
		t.Errorf("%d failure lines", n)
	}
}

// TestEscalateOnlyMissing checks that escalation does not repeat an action
// the plan already ran, and runs the others.
func TestEscalateOnlyMissing(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionUnready, ActionKill}, KillLimit: 1, Escalate: []Action{ActionUnready, ActionMetric}})
	f := changed("/a", []byte("a"), []byte("b"))
	for range 2 {
		if err := e.r.Handle(t.Context(), f, nil); err != nil {
			t.Fatal(err)
		}
		e.restarted()
	}
	if v := e.action(t, ActionUnready, metrics.ResultOK); v != 2 {
		t.Errorf("unready ok = %v, want once per finding", v)
	}
	if v := e.action(t, ActionMetric, metrics.ResultOK); v != 1 {
		t.Errorf("metric ok = %v, want once (escalation)", v)
	}
}

func TestMissingSeams(t *testing.T) {
	r := New(Plan{Actions: []Action{ActionMetric, ActionUnready, ActionKill, ActionRestore}}, nil, nil, nil, nil, nil)
	orig := []byte("x")
	err := r.Handle(context.Background(), changed("/a", orig, []byte("y")), orig)
	for _, want := range []string{"no metrics", "no target"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	r.Resolved("/a")
	if err := r.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

// fakeKube records what the responder asks of the Kubernetes API.
type fakeKube struct {
	mu         sync.Mutex
	events     []string // "Type Reason: message"
	quarantine []bool
	reasons    []string
	deletes    int
	deleteErr  error
}

func (k *fakeKube) Event(eventType, reason, message string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.events = append(k.events, eventType+" "+reason+": "+message)
}

func (k *fakeKube) SetQuarantine(on bool, reason string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.quarantine = append(k.quarantine, on)
	k.reasons = append(k.reasons, reason)
}

func (k *fakeKube) Delete(minAge time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.deleteErr != nil {
		return k.deleteErr
	}
	k.deletes++
	return nil
}

func (k *fakeKube) reasonsPosted() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, e := range k.events {
		out = append(out, strings.SplitN(strings.SplitN(e, ":", 2)[0], " ", 2)[1])
	}
	return out
}

func TestEventsAndQuarantine(t *testing.T) {
	k := &fakeKube{}
	e := newKubeEnv(t, Plan{Actions: []Action{ActionLog, ActionEvent, ActionQuarantine, ActionRestore}}, k)
	orig := []byte("Hello, world!\n")
	if err := e.r.Handle(t.Context(), changed("/srv/www/index.html", orig, []byte("Hacked\n")), orig); err != nil {
		t.Fatal(err)
	}
	added := compare.Finding{Path: "/srv/www/x.php", Kind: compare.Added, New: regular("/srv/www/x.php", []byte("x")), Origin: origin.Origin{Kind: origin.Container}}
	if err := e.r.Handle(t.Context(), added, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"FileChanged", "PodQuarantined", "FileRestored", "FileAdded"}
	if got := k.reasonsPosted(); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if got := k.events[3]; got != "Warning FileAdded: integrity violation: /srv/www/x.php was added; origin: container" {
		t.Errorf("event of the added file: %q, want its origin", got)
	}
	if len(k.quarantine) != 2 || !k.quarantine[0] || !k.quarantine[1] {
		t.Fatalf("quarantine calls %v", k.quarantine)
	}
	// The annotation names every open path and keeps the first time.
	if !strings.Contains(k.reasons[1], `"paths":["/srv/www/index.html","/srv/www/x.php"]`) || !strings.Contains(k.reasons[1], `"since":"2025-01-02T03:04:05Z"`) {
		t.Errorf("annotation %s", k.reasons[1])
	}
	if v := e.action(t, ActionQuarantine, metrics.ResultOK); v != 2 {
		t.Errorf("quarantine ok = %v", v)
	}
	e.r.Resolved("/srv/www/index.html")
	if len(k.quarantine) != 2 {
		t.Errorf("released with a violation still open: %v", k.quarantine)
	}
	e.r.Resolved("/srv/www/x.php")
	if len(k.quarantine) != 3 || k.quarantine[2] {
		t.Errorf("not released after the last violation: %v", k.quarantine)
	}
	want = append(want, "ViolationResolved", "ViolationResolved", "PodReleased")
	if got := k.reasonsPosted(); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	// Resolving a path that was never open posts nothing.
	e.r.Resolved("/never")
	if got := k.reasonsPosted(); len(got) != len(want) {
		t.Errorf("events after resolving nothing: %v", got)
	}
}

// TestNoKube: without API access the Kubernetes actions fail or are
// skipped, counted, and the other actions still run.
func TestNoKube(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionEvent, ActionQuarantine, ActionMetric, ActionUnready, ActionDelete}, Escalate: []Action{ActionUnready}})
	err := e.r.Handle(t.Context(), changed("/a", []byte("x"), []byte("y")), nil)
	if err == nil || !strings.Contains(err.Error(), "no Kubernetes API access") {
		t.Errorf("error %v", err)
	}
	if v := e.metric(t, "podfim_findings_total", "kind", "changed"); v != 1 {
		t.Errorf("metric action did not run: %v", v)
	}
	if ok, _ := e.ready(); ok {
		t.Error("unready did not run")
	}
	for a, r := range map[Action]metrics.Result{ActionEvent: metrics.ResultSkipped, ActionQuarantine: metrics.ResultError, ActionDelete: metrics.ResultError} {
		if v := e.action(t, a, r); v != 1 {
			t.Errorf("%s %s = %v, want 1", a, r, v)
		}
	}
}

func TestDelete(t *testing.T) {
	k := &fakeKube{}
	e := newKubeEnv(t, Plan{Actions: []Action{ActionEvent, ActionDelete}, Escalate: []Action{ActionQuarantine, ActionUnready}}, k)
	if err := e.r.Handle(t.Context(), changed("/a", []byte("x"), []byte("y")), nil); err != nil {
		t.Fatal(err)
	}
	if k.deletes != 1 || len(k.quarantine) != 0 {
		t.Errorf("deletes %d, quarantine %v", k.deletes, k.quarantine)
	}
	if got := k.reasonsPosted(); !slices.Equal(got, []string{"FileChanged", "PodDeleted"}) {
		t.Errorf("events %v", got)
	}
	// The guard refuses (a young replacement pod): escalation instead.
	k.deleteErr = errors.New("the pod is younger than the delete guard's minimum age: 10s < 5m0s")
	if err := e.r.Handle(t.Context(), changed("/b", []byte("x"), []byte("y")), nil); err != nil {
		t.Fatal(err)
	}
	if len(k.quarantine) != 1 || !k.quarantine[0] {
		t.Errorf("no quarantine after a refused delete: %v", k.quarantine)
	}
	if ok, _ := e.ready(); ok {
		t.Error("no unready after a refused delete")
	}
	if v := e.action(t, ActionDelete, metrics.ResultSkipped); v != 1 {
		t.Errorf("delete skipped = %v", v)
	}
	if !slices.Contains(k.reasonsPosted(), "DeleteRefused") || !strings.Contains(e.logs.String(), "younger than") {
		t.Errorf("the refusal is not reported: %v %s", k.reasonsPosted(), e.logs.String())
	}
	// A storm of refusals is said once.
	for _, p := range []string{"/c", "/d", "/e"} {
		if err := e.r.Handle(t.Context(), changed(p, []byte("x"), []byte("y")), nil); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, r := range k.reasonsPosted() {
		if r == "DeleteRefused" {
			n++
		}
	}
	if n != 1 || strings.Count(e.logs.String(), `"level":"WARN","msg":"pod not deleted`) != 1 {
		t.Errorf("%d DeleteRefused Events and %d warnings for 4 refusals, want 1 each", n, strings.Count(e.logs.String(), `"level":"WARN","msg":"pod not deleted`))
	}
}

// TestDeleteFailed: a deletion the API server refused after the guard let
// it through runs the escalation for the finding that asked, once.
func TestDeleteFailed(t *testing.T) {
	k := &fakeKube{}
	e := newKubeEnv(t, Plan{Actions: []Action{ActionEvent, ActionDelete}, Escalate: []Action{ActionQuarantine, ActionUnready}}, k)
	e.r.DeleteFailed(errors.New("nothing requested")) // no request: nothing to escalate
	if len(k.quarantine) != 0 || len(k.events) != 0 {
		t.Fatalf("escalated without a delete request: %v %v", k.quarantine, k.events)
	}
	if err := e.r.Handle(t.Context(), changed("/a", []byte("x"), []byte("y")), nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.ready(); !ok || len(k.quarantine) != 0 {
		t.Fatalf("escalated before the deletion failed: quarantine %v", k.quarantine)
	}
	e.r.DeleteFailed(errors.New(`forbidden by RBAC: the service account may not "delete" "pods"`))
	if len(k.quarantine) != 1 || !k.quarantine[0] || !strings.Contains(k.reasons[0], `"/a"`) {
		t.Errorf("no quarantine of /a after the deletion failed: %v %v", k.quarantine, k.reasons)
	}
	if ok, _ := e.ready(); ok {
		t.Error("no unready after the deletion failed")
	}
	if got := k.reasonsPosted(); !slices.Equal(got, []string{"FileChanged", "PodDeleted", "DeleteRefused", "PodQuarantined"}) {
		t.Errorf("events %v", got)
	}
	if v := e.action(t, ActionDelete, metrics.ResultError); v != 1 {
		t.Errorf("delete error = %v", v)
	}
	if !strings.Contains(e.logs.String(), "forbidden by RBAC") {
		t.Errorf("the failure is not logged: %s", e.logs.String())
	}
	e.r.DeleteFailed(errors.New("again")) // once per request
	if len(k.quarantine) != 1 {
		t.Errorf("escalated twice for one request: %v", k.quarantine)
	}

	// Resolved before the deletion failed: nothing is escalated, or the
	// closed violation would stay open.
	e.r.Resolved("/a")
	if err := e.r.Handle(t.Context(), changed("/b", []byte("x"), []byte("y")), nil); err != nil {
		t.Fatal(err)
	}
	e.r.Resolved("/b")
	n := len(k.quarantine)
	e.r.DeleteFailed(errors.New("the API server does not answer"))
	if len(k.quarantine) != n {
		t.Errorf("escalated for a resolved violation: %v", k.quarantine[n:])
	}
	if ok, reasons := e.ready(); !ok {
		t.Errorf("unready for a resolved violation: %v", reasons)
	}
}

func TestKillEvents(t *testing.T) {
	k := &fakeKube{}
	e := newKubeEnv(t, Plan{Actions: []Action{ActionEvent, ActionKill}, KillLimit: 1, Escalate: []Action{ActionQuarantine}}, k)
	for _, p := range []string{"/a", "/b"} {
		if err := e.r.Handle(t.Context(), changed(p, []byte("x"), []byte("y")), nil); err != nil {
			t.Fatal(err)
		}
		e.restarted()
	}
	want := []string{"FileChanged", "ContainerKilled", "FileChanged", "KillLimitReached", "PodQuarantined"}
	if got := k.reasonsPosted(); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}
