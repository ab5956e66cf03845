package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
)

// Status prints each process and the node; it fails unless all is up.
func (c *Config) Status(ctx context.Context) error {
	var bad []string
	for _, n := range daemonNames {
		if pid := c.running(n); pid != 0 {
			fmt.Fprintf(c.Out, "%-24s running (pid %d)\n", n, pid)
		} else {
			fmt.Fprintf(c.Out, "%-24s not running\n", n)
			bad = append(bad, n)
		}
	}
	if len(bad) == len(daemonNames) {
		return errors.New("the cluster is down")
	}
	a, err := c.api()
	if err != nil {
		return err
	}
	code, err := a.get(ctx, "/readyz", nil)
	if err != nil || code != http.StatusOK {
		fmt.Fprintf(c.Out, "%-24s not ready (HTTP %d %v)\n", "api", code, err)
		bad = append(bad, "api")
	} else {
		fmt.Fprintf(c.Out, "%-24s ready at https://127.0.0.1:%d\n", "api", c.APIPort)
		ok, why, err := a.nodeReady(ctx, c.Node)
		switch {
		case err != nil:
			bad = append(bad, "node")
			fmt.Fprintf(c.Out, "%-24s %v\n", "node "+c.Node, err)
		case !ok:
			bad = append(bad, "node")
			fmt.Fprintf(c.Out, "%-24s not Ready (%s)\n", "node "+c.Node, why)
		default:
			fmt.Fprintf(c.Out, "%-24s Ready\n", "node "+c.Node)
		}
	}
	fmt.Fprintf(c.Out, "%-24s %s\n", "KUBECONFIG", c.Kubeconfig())
	if len(bad) > 0 {
		return fmt.Errorf("not up: %s", strings.Join(bad, ", "))
	}
	return nil
}

// Smoke brings the cluster up, runs the module's tests (the smoke test
// among them) against it and tears it down, whatever happened.
func (c *Config) Smoke(ctx context.Context) (err error) {
	src, err := c.findSrc()
	if err != nil {
		return err
	}
	if err := c.Up(ctx, true); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			c.dumpLogs()
		}
		if derr := c.down(err != nil); derr != nil {
			err = errors.Join(err, fmt.Errorf("down: %w", derr))
		}
	}()
	var env strings.Builder
	c.Env(&env)
	goBin, lerr := exec.LookPath("go")
	if lerr != nil {
		goBin = "/usr/local/go/bin/go"
	}
	// ./... : the harness's own unit tests, then the smoke test.
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1", "-v", "./...")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), envPairs(env.String())...)
	cmd.Stdout, cmd.Stderr = c.Out, c.Err
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	return nil
}

// envPairs turns Env's "export K=V" lines into K=V, dropping PATH (the
// test finds kubectl through KUBECTL).
func envPairs(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimPrefix(l, "export ")
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "PATH" {
			continue
		}
		out = append(out, k+"="+strings.Trim(v, "'"))
	}
	return out
}
