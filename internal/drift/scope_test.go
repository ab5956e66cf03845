package drift

import "testing"

// TestOutsidePolicy: a baseline whose policy covers only /www says nothing
// of the app's own /hello, so a process running it is not "added" (a
// policy of part of the image made every process of the app drift, and
// the kill response killed the app in a loop). A file the policy covers
// and the baseline lacks is still added; memory-backed code needs no
// baseline and is still reported.
func TestOutsidePolicy(t *testing.T) {
	pod := newFakePod(t, "/hello", []string{"hello", "www/evil"}, Config{
		Baseline: &fakeBase{dirs: []string{"/www", "/hello"}}, // neither holds an entry
		Covers:   func(p string) bool { return under(p, "/www") },
	})
	id, proc := podID, pod.proc
	poll := func() map[string]Reason {
		t.Helper()
		got := map[string]Reason{}
		for _, f := range pod.poll(t) {
			got[f.Path] = f.Reason
		}
		return got
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("the app's /hello, outside the policy's /www: findings %v, want none", got)
	}
	proc.add(11, 10, 1001, appNS, "/www/evil", id)
	proc.add(12, 10, 1002, appNS, "/memfd:payload (deleted)", id)
	got := poll()
	if got["/www/evil"] != Added || got["/memfd:payload"] != Memory || len(got) != 2 {
		t.Errorf("findings %v, want /www/evil added and /memfd:payload memory only", got)
	}
}
