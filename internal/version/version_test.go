package version

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolveStampsWin(t *testing.T) {
	bi := &debug.BuildInfo{
		Main: debug.Module{Version: "v0.0.0-20261203120000-0123456789ab"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "ffffffffffffffffffffffffffffffffffffffff"},
			{Key: "vcs.time", Value: "2026-12-03T12:00:00Z"},
		},
	}
	i := resolve("v0.2.0", "0123456789abcdef0123456789abcdef01234567", "2026-12-03T13:00:00Z", bi)
	want := Info{Version: "v0.2.0", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-12-03T13:00:00Z",
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if i != want {
		t.Errorf("resolve = %+v, want %+v", i, want)
	}
	wantS := "podfim v0.2.0 (commit 0123456789ab, 2026-12-03T13:00:00Z, " + runtime.Version() + ", " + want.Platform + ")"
	if s := i.String(); s != wantS {
		t.Errorf("String = %q, want %q", s, wantS)
	}
	if ua := i.UserAgent(); ua != "podfim/v0.2.0" {
		t.Errorf("UserAgent = %q", ua)
	}
}

func TestResolveFallsBackToBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		Main: debug.Module{Version: "v0.0.0-20261203120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-03T14:00:00+02:00"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	i := resolve("", "", "", bi)
	if i.Version != bi.Main.Version || i.Commit != "0123456789abcdef0123456789abcdef01234567-dirty" || i.Date != "2026-12-03T12:00:00Z" {
		t.Errorf("resolve = %+v", i)
	}
	if s := i.String(); !strings.Contains(s, "(commit 0123456789ab-dirty, 2026-12-03T12:00:00Z,") {
		t.Errorf("String = %q", s)
	}
	// Nothing recorded at all (go run of a file, a build without VCS).
	i = resolve("", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}})
	if i.Version != Unknown || i.Commit != Unknown || i.Date != Unknown {
		t.Errorf("resolve without information = %+v, want %q everywhere", i, Unknown)
	}
}

// TestLinkerStamps builds podfim the way the Makefile does (-X of the three
// variables) and checks that `podfim version --format json` reports them:
// a renamed variable or package would silently leave every release
// "unknown" otherwise, since -X of a missing symbol is no error.
func TestLinkerStamps(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("builds podfim")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "podfim")
	const pkg = "github.com/podfim/podfim/internal/version"
	ldflags := "-X " + pkg + ".version=v9.8.7-test -X " + pkg + ".commit=0123456789abcdef0123456789abcdef01234567 -X " + pkg + ".date=2026-12-03T13:00:00Z"
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/podfim")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--format", "json").Output()
	if err != nil {
		t.Fatalf("podfim version --format json: %v", err)
	}
	var i Info
	if err := json.Unmarshal(out, &i); err != nil {
		t.Fatalf("version JSON %q: %v", out, err)
	}
	if i.Version != "v9.8.7-test" || i.Commit != "0123456789abcdef0123456789abcdef01234567" || i.Date != "2026-12-03T13:00:00Z" ||
		!strings.HasPrefix(i.GoVersion, "go1.") || i.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("podfim version --format json = %+v", i)
	}
	text, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "podfim v9.8.7-test (commit 0123456789ab, 2026-12-03T13:00:00Z, "; !strings.HasPrefix(string(text), want) {
		t.Errorf("podfim version = %q, want prefix %q", text, want)
	}
}
