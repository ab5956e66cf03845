package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/podfim/podfim/internal/respond"
)

// parseSidecar parses args and resolves env and the config file the way the
// sidecar command does, without starting anything.
func parseSidecar(t *testing.T, args []string, env map[string]string) (*sidecarFlags, error) {
	t.Helper()
	var f sidecarFlags
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &f, f.resolve(fs, func(k string) string { return env[k] })
}

func TestSidecarSettingsPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "podfim.yaml")
	if err := os.WriteFile(cfg, []byte("quick-interval: 30s\nfull-interval: 2h\nrespond: [log, kill]\nkill-limit: 5\nlisten: 127.0.0.1:9999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := parseSidecar(t,
		[]string{"--config", cfg, "--quick-interval", "10s"},
		map[string]string{"PODFIM_FULL_INTERVAL": "3h", "PODFIM_KILL_LIMIT": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if f.quick != 10*time.Second {
		t.Errorf("quick = %v: the flag must win over the file", f.quick)
	}
	if f.full != 3*time.Hour || f.killLimit != 7 {
		t.Errorf("full = %v, kill-limit = %d: the environment must win over the file", f.full, f.killLimit)
	}
	if !slices.Equal(f.respond, []string{"log", "kill"}) || f.listen != "127.0.0.1:9999" {
		t.Errorf("respond = %q, listen = %q: taken from the file", f.respond, f.listen)
	}
	if f.retarget != 200*time.Millisecond || f.stateDir != "/var/lib/podfim" {
		t.Errorf("defaults changed: retarget %v, state-dir %q", f.retarget, f.stateDir)
	}
	// The config file can come from the environment too.
	f, err = parseSidecar(t, nil, map[string]string{"PODFIM_CONFIG": cfg})
	if err != nil || f.killLimit != 5 {
		t.Errorf("PODFIM_CONFIG: kill-limit %d, %v", f.killLimit, err)
	}
}

func TestSidecarSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("quick-intervall: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseSidecar(t, []string{"--config", bad}, nil); err == nil || !strings.Contains(err.Error(), `unknown setting "quick-intervall"`) {
		t.Errorf("typo in config: %v", err)
	}
	if _, err := parseSidecar(t, nil, map[string]string{"PODFIM_QUICK_INTERVAL": "soon"}); err == nil || !strings.Contains(err.Error(), "PODFIM_QUICK_INTERVAL") {
		t.Errorf("bad env value: %v", err)
	}
	if _, err := parseSidecar(t, []string{"--config", filepath.Join(dir, "missing.yaml")}, nil); ExitCode(err) != ExitIO {
		t.Errorf("missing config: %v (exit %d)", err, ExitCode(err))
	}
	// Validation happens before anything starts, with the reason.
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--respond", "log,explode"}, `unknown action "explode"`},
		{[]string{"--inotify=false", "--quick-interval", "0", "--full-interval", "0"}, "nothing would detect changes"},
		{[]string{"--target-container", "xyz"}, "container"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--respond", "log,restore", "--state-dir", ""}, "--state-dir"},
	} {
		f, err := parseSidecar(t, tt.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = f.build()
		if err == nil || !strings.Contains(err.Error(), tt.msg) || ExitCode(err) != ExitUsage {
			t.Errorf("%q: %v (exit %d), want usage error containing %q", tt.args, err, ExitCode(err), tt.msg)
		}
	}
	f, err := parseSidecar(t, []string{"--respond", "log,metric,kill", "--escalate", "unready"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := f.build()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Plan.Actions, []respond.Action{"log", "metric", "kill"}) || cfg.Source() != "first-sight" {
		t.Errorf("plan %v source %s", cfg.Plan.Actions, cfg.Source())
	}
}
