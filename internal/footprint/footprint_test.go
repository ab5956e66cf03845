package footprint

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TestRelease: the binary's read-only pages that start-up made resident
// are dropped, and the code still runs (its pages come back on use).
func TestRelease(t *testing.T) {
	before, anon, err := Resident()
	if err != nil {
		t.Fatal(err)
	}
	if before == 0 {
		t.Fatal("no resident pages of the executable before Release")
	}
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after, _, err := Resident()
	if err != nil {
		t.Fatal(err)
	}
	if released == 0 || after >= before {
		t.Fatalf("Release released %d bytes; resident pages of the executable %d -> %d bytes (%d private)", released, before, after, anon)
	}
	// Code and read-only data that were dropped still work.
	s := []string{"b", "c", "a"}
	sort.Strings(s)
	if got := fmt.Sprintf("%v %x", s, sha256.Sum256([]byte("x"))); got[:7] != "[a b c]" {
		t.Errorf("after Release: %q", got)
	}
	t.Logf("released %d KiB; resident pages of the executable %d -> %d KiB", released>>10, before>>10, after>>10)
}

func TestReadSmaps(t *testing.T) {
	p := filepath.Join(t.TempDir(), "smaps")
	body := `00400000-00e37000 r-xp 00000000 fd:00 123 /usr/bin/podfim
Size:              10460 kB
Rss:                7068 kB
Anonymous:             0 kB
018bf000-01959000 rw-p 014bf000 fd:00 123 /usr/bin/with space
Rss:                 420 kB
Anonymous:           100 kB
7ffd1000-7ffd2000 r-xp 00000000 00:00 0
Rss:                   4 kB
`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ms, err := readSmaps(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{lo: 0x400000, hi: 0xe37000, perms: "r-xp", path: "/usr/bin/podfim", rss: 7068 << 10},
		{lo: 0x18bf000, hi: 0x1959000, perms: "rw-p", path: "/usr/bin/with space", rss: 420 << 10, anon: 100 << 10},
		{lo: 0x7ffd1000, hi: 0x7ffd2000, perms: "r-xp", rss: 4 << 10},
	}
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Errorf("readSmaps = %+v\nwant %+v", ms, want)
	}
	if err := os.WriteFile(p, []byte("zz-yy r-xp 0 0 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSmaps(p); err == nil {
		t.Error("a malformed header: no error")
	}
}
