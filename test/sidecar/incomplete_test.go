package sidecar_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/podfim/podfim/internal/testwait"
)

// An unreadable file makes every whole-tree check incomplete, and that is
// an alert, never silence: the sidecar (here without CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH, as in a restricted pod) logs "check incomplete"
// naming the file, counts podfim_scans_total{result="incomplete"} and sets
// podfim_check_incomplete_paths; the last full check's time does not
// advance. Before, the scan's warnings were dropped: the file was never
// compared and nothing said so.
func TestUnreadableFileIncomplete(t *testing.T) {
	image := makeImage(t, page)
	writeFile(t, filepath.Join(image, "www", "secret"), []byte("not for the sidecar\n"), 0)
	a := startApp(t, image)
	s := startSidecar(t, sidecarOpts{state: filepath.Join(t.TempDir(), "state"), respond: "log,metric,unready", noDAC: true})
	waitStarted(t, s, a)
	l := s.waitLog(t, waitTimeout, "check incomplete: some paths could not be compared", func(l logLine) bool { return l.str("type") == "full" })
	if l.num("count") != 1 || len(l.list("warnings")) != 1 {
		t.Errorf("check incomplete line: %v, want count 1 and one warning (/www/secret)", l)
	}
	testwait.Eventually(t, waitTimeout, poll, "incomplete full checks counted", func() (bool, string) {
		n, _ := s.metric(t, "podfim_scans_total", "type=full", "result=incomplete")
		p, _ := s.metric(t, "podfim_check_incomplete_paths", "type=full")
		return n >= 1 && p == 1, fmt.Sprintf("incomplete full checks %v, paths %v", n, p)
	})
	if v, _ := s.metric(t, "podfim_last_full_check_timestamp_seconds"); v != 0 {
		t.Errorf("podfim_last_full_check_timestamp_seconds = %v: an incomplete full check is no evidence", v)
	}
}
