package respond

import (
	"fmt"
	"slices"
	"testing"

	"github.com/podfim/podfim/internal/compare"
)

// TestLedger: the responder's ledger is the one record of open violations,
// and /readyz, podfim_violations_open and Open are views of it.
func TestLedger(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionLog}, KillLimit: 1, Escalate: []Action{ActionUnready}})
	for _, p := range []string{"/b", "/a"} {
		if err := e.r.Handle(t.Context(), changed(p, []byte("x"), []byte("y")), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.r.Open(); !slices.Equal(got, []string{"/a", "/b"}) {
		t.Errorf("Open = %q", got)
	}
	if v := e.metric(t, "podfim_violations_open"); v != 2 {
		t.Errorf("violations open = %v", v)
	}
	// Open, but the plan does not hold the pod unready for them.
	if ok, reasons := e.ready(); !ok {
		t.Errorf("unready without the unready action: %q", reasons)
	}

	// A new container: not verified until its first full check, and the
	// violations stay open until a check resolves them.
	e.r.TargetChanged(false)
	if ok, reasons := e.ready(); ok || !slices.Equal(reasons, []string{"not started: the first full verification of the target has not completed"}) {
		t.Errorf("after TargetChanged: ready %v %q", ok, reasons)
	}
	if got := e.r.Open(); len(got) != 2 {
		t.Errorf("Open after TargetChanged = %q", got)
	}
	e.r.Resolved("/a")
	e.r.Verified()
	if ok, reasons := e.ready(); !ok {
		t.Errorf("verified: ready %v %q", ok, reasons)
	}
	if got := e.r.Open(); !slices.Equal(got, []string{"/b"}) {
		t.Errorf("Open = %q", got)
	}
	// Resolving what is not open changes nothing.
	e.r.Resolved("/a")
	e.r.Resolved("/never")
	if v := e.metric(t, "podfim_violations_open"); v != 1 {
		t.Errorf("violations open = %v", v)
	}
}

// TestLedgerReadinessBounded: Readiness lists at most max unready
// violations in path order and counts them all.
func TestLedgerReadinessBounded(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionUnready}})
	for i := range 7 {
		f := compare.Finding{Path: fmt.Sprintf("/f%d", 6-i), Kind: compare.Removed, Old: regular("/f", []byte("x"))}
		if err := e.r.Handle(t.Context(), f, nil); err != nil {
			t.Fatal(err)
		}
	}
	verified, keys, total := e.r.Readiness(3)
	if !verified || !slices.Equal(keys, []string{"/f0", "/f1", "/f2"}) || total != 7 {
		t.Errorf("Readiness(3) = %v %q %d", verified, keys, total)
	}
}

// TestLedgerUnreadyDoesNotReopen: the unready action of a late escalation
// does not open again a violation resolved meanwhile.
func TestLedgerUnreadyDoesNotReopen(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionLog}})
	if err := e.r.Handle(t.Context(), changed("/a", []byte("x"), []byte("y")), nil); err != nil {
		t.Fatal(err)
	}
	e.r.Resolved("/a")
	e.r.holdUnready("/a")
	if got := e.r.Open(); len(got) != 0 {
		t.Errorf("open after a late unready: %q", got)
	}
	if ok, reasons := e.ready(); !ok {
		t.Errorf("unready after a late unready: %q", reasons)
	}
}
