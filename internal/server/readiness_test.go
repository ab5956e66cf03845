package server

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeReadiness is a Readiness over a set of keys, as the responder's
// ledger is over its open violations.
type fakeReadiness struct {
	mu      sync.Mutex
	started bool
	open    map[string]bool
}

func (r *fakeReadiness) SetStarted(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = v
}

func (r *fakeReadiness) SetViolation(k string, open bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		r.open = map[string]bool{}
	}
	if open {
		r.open[k] = true
	} else {
		delete(r.open, k)
	}
}

func (r *fakeReadiness) Readiness(max int) (bool, []string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k := range r.open {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return r.started, keys[:min(len(keys), max)], len(keys)
}

func (r *fakeReadiness) Ready() (bool, []string) { return Ready(r) }

func TestReadiness(t *testing.T) {
	var r fakeReadiness
	if ok, reasons := r.Ready(); ok || len(reasons) != 1 {
		t.Fatalf("zero value: ready %v, reasons %q", ok, reasons)
	}
	r.SetStarted(true)
	if ok, reasons := r.Ready(); !ok || reasons != nil {
		t.Fatalf("started: ready %v, reasons %q", ok, reasons)
	}
	r.SetViolation("/b", true)
	r.SetViolation("/a", true)
	r.SetViolation("/a", true)
	if ok, reasons := r.Ready(); ok || !slices.Equal(reasons, []string{"integrity violation: /a", "integrity violation: /b"}) {
		t.Fatalf("violations: ready %v, reasons %q", ok, reasons)
	}
	r.SetViolation("/a", false)
	r.SetViolation("/never-opened", false)
	r.SetViolation("/b", false)
	if ok, _ := r.Ready(); !ok {
		t.Fatal("not ready after every violation closed")
	}
	r.SetStarted(false)
	if ok, _ := r.Ready(); ok {
		t.Fatal("ready after SetStarted(false)")
	}
}

// TestReadinessHostileKeys checks that a file name cannot forge a line of
// /readyz.
func TestReadinessHostileKeys(t *testing.T) {
	var r fakeReadiness
	r.SetStarted(true)
	r.SetViolation("/x\nok", true)
	r.SetViolation("/\xff", true)
	_, reasons := r.Ready()
	want := []string{`integrity violation: "/x\nok"`, `integrity violation: "/\xff"`} // raw byte order
	if !slices.Equal(reasons, want) {
		t.Errorf("reasons %q, want %q", reasons, want)
	}
}

func TestReadinessReasonsBounded(t *testing.T) {
	var r fakeReadiness
	r.SetStarted(true)
	for i := range maxReasons + 7 {
		r.SetViolation(fmt.Sprintf("/f%03d", i), true)
	}
	_, reasons := r.Ready()
	if len(reasons) != maxReasons+1 || reasons[maxReasons] != "and 7 more integrity violations" {
		t.Errorf("%d reasons, last %q", len(reasons), reasons[len(reasons)-1])
	}
}

// TestReadyNil: without a Readiness, /readyz is always ready.
func TestReadyNil(t *testing.T) {
	if ok, reasons := Ready(nil); !ok || reasons != nil {
		t.Errorf("nil: ready %v, reasons %q", ok, reasons)
	}
}

// overlong returns more keys than asked for, and fewer in total.
type overlong struct{}

func (overlong) Readiness(int) (bool, []string, int) {
	keys := make([]string, maxReasons+3)
	for i := range keys {
		keys[i] = fmt.Sprintf("/k%d", i)
	}
	return true, keys, 1
}

// TestReadyBoundsAnyReadiness: the bound holds whatever the Readiness
// returns.
func TestReadyBoundsAnyReadiness(t *testing.T) {
	_, reasons := Ready(overlong{})
	if len(reasons) != maxReasons+1 || reasons[maxReasons] != "and 3 more integrity violations" {
		t.Errorf("%d reasons, last %q", len(reasons), reasons[len(reasons)-1])
	}
}

// blockedReadiness is a Readiness that also says why it cannot verify.
type blockedReadiness struct {
	fakeReadiness
	why string
}

func (r *blockedReadiness) Blocked() string { return r.why }

// A Readiness that is blocked (a refused baseline) is named on /readyz,
// quoted when it is not printable; one that is not says "not started".
func TestReadinessBlocked(t *testing.T) {
	r := &blockedReadiness{why: "baseline refused (source registry, reason signature)"}
	if ok, reasons := Ready(r); ok || len(reasons) != 1 || reasons[0] != "not verified: baseline refused (source registry, reason signature)" {
		t.Errorf("blocked: ready %v, reasons %q", ok, reasons)
	}
	r.why = "x\nintegrity violation: forged"
	if _, reasons := Ready(r); len(reasons) != 1 || strings.ContainsRune(reasons[0], '\n') {
		t.Errorf("hostile reason not quoted: %q", reasons)
	}
	r.why = ""
	if _, reasons := Ready(r); len(reasons) != 1 || !strings.HasPrefix(reasons[0], "not started:") {
		t.Errorf("not blocked: %q", reasons)
	}
}
