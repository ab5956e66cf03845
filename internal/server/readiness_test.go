package server

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestReadiness(t *testing.T) {
	var r Readiness
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
	if n := r.Violations(); n != 2 {
		t.Errorf("Violations = %d", n)
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
	var r Readiness
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
	var r Readiness
	r.SetStarted(true)
	for i := range maxReasons + 7 {
		r.SetViolation(fmt.Sprintf("/f%03d", i), true)
	}
	_, reasons := r.Ready()
	if len(reasons) != maxReasons+1 || reasons[maxReasons] != "and 7 more integrity violations" {
		t.Errorf("%d reasons, last %q", len(reasons), reasons[len(reasons)-1])
	}
}

func TestReadinessConcurrent(t *testing.T) {
	var r Readiness
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				k := fmt.Sprintf("/%d/%d", i, j)
				r.SetViolation(k, true)
				r.Ready()
				r.SetStarted(true)
				r.SetViolation(k, false)
			}
		})
	}
	wg.Wait()
	if ok, reasons := r.Ready(); !ok {
		t.Errorf("not ready: %q", reasons)
	}
}
