// Package version says which podfim a binary is: its release version, the
// commit it was built from, that commit's time and the Go toolchain. It is
// the one owner of that answer; `podfim version`, the sidecar's and the
// webhook's start-up logs and the API client's User-Agent all ask it.
//
// A release build (`make build`, `make images`, `make release`) stamps the
// version from scripts/version.sh with the linker (-X). A plain `go build`
// or `go install` falls back to what the Go toolchain records in the binary
// (module version, vcs.revision, vcs.time), so it still names its commit.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"
)

// Set by the linker: -X github.com/podfim/podfim/internal/version.version=...
// (and commit, date). The linker can only set package-level string
// variables, which is why these three exist; nothing else writes them.
var (
	version string
	commit  string
	date    string
)

// Unknown stands for a field neither the linker nor the toolchain recorded.
const Unknown = "unknown"

// Info describes one build. Date is the commit's time (RFC 3339, UTC), not
// the time of the build: builds of one commit are reproducible, byte for
// byte, only if nothing in them depends on when they ran.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build's description: the linker's stamps where present,
// else the toolchain's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// resolve is Get with its inputs as parameters, for tests.
func resolve(stampVersion, stampCommit, stampDate string, bi *debug.BuildInfo) Info {
	i := Info{
		Version:   stampVersion,
		Commit:    stampCommit,
		Date:      stampDate,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi != nil {
		fromBuildInfo(&i, bi)
	}
	for _, f := range []*string{&i.Version, &i.Commit, &i.Date} {
		if *f == "" {
			*f = Unknown
		}
	}
	return i
}

// fromBuildInfo fills the fields the linker left empty. Since Go 1.24 the
// main module's version is derived from the VCS (a tag, or a pseudo-version
// such as v0.0.0-20261203130000-0123456789ab+dirty); "(devel)" means none.
func fromBuildInfo(i *Info, bi *debug.BuildInfo) {
	if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		i.Version = bi.Main.Version
	}
	modified := false
	var rev, at string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if i.Commit == "" && rev != "" {
		i.Commit = rev
		if modified {
			i.Commit += "-dirty"
		}
	}
	if i.Date == "" && at != "" {
		if t, err := time.Parse(time.RFC3339, at); err == nil {
			i.Date = t.UTC().Format(time.RFC3339)
		}
	}
}

// String is the one-line form: "podfim v0.2.0 (commit 0123456789ab,
// 2026-12-03T13:00:00Z, go1.26.0, linux/amd64)".
func (i Info) String() string {
	c := i.Commit
	if len(c) > 12 && c != Unknown {
		c = shortCommit(c)
	}
	return fmt.Sprintf("podfim %s (commit %s, %s, %s, %s)", i.Version, c, i.Date, i.GoVersion, i.Platform)
}

// shortCommit keeps 12 hex digits of a commit and its "-dirty" mark.
func shortCommit(c string) string {
	const n = 12
	suffix := ""
	if len(c) > len("-dirty") && c[len(c)-len("-dirty"):] == "-dirty" {
		c, suffix = c[:len(c)-len("-dirty")], "-dirty"
	}
	if len(c) > n {
		c = c[:n]
	}
	return c + suffix
}

// UserAgent is the API client's User-Agent: "podfim/<version>".
func (i Info) UserAgent() string { return "podfim/" + i.Version }
