package respond

import (
	"strings"
	"testing"
)

// TestOmittedHoldsPodDown: findings the monitor left out at its bound hold
// the pod out of service like open violations until a whole-tree check
// leaves none out; they are counted and logged at most once a minute
// (issue 11 item 4).
func TestOmittedHoldsPodDown(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionLog, ActionUnready}})
	e.r.Omitted(7, true)
	e.r.Omitted(2, false) // an event check
	e.r.Omitted(5, true)  // the next whole-tree check: replaces
	if verified, keys, total := e.r.Readiness(50); !verified || len(keys) != 0 || total != 5 {
		t.Errorf("Readiness = %v %q %d, want verified, no keys, 5 in all", verified, keys, total)
	}
	if v := e.metric(t, "podfim_limit_overflows_total", "limit", "findings"); v != 14 {
		t.Errorf("podfim_limit_overflows_total{limit=findings} = %v, want 14", v)
	}
	if n := strings.Count(e.logs.String(), msgOmitted); n != 1 {
		t.Errorf("%d log lines %q, want 1 within a minute", n, msgOmitted)
	}
	e.r.Omitted(0, true)
	if _, _, total := e.r.Readiness(50); total != 0 {
		t.Errorf("Readiness total %d after a check left nothing out, want 0", total)
	}
	// Without the unready action nothing holds the pod down.
	e = newEnv(t, Plan{Actions: []Action{ActionLog}})
	e.r.Omitted(3, true)
	if _, _, total := e.r.Readiness(50); total != 0 {
		t.Errorf("Readiness total %d without unready, want 0", total)
	}
}
