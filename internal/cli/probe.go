package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// probeBodyBytes bounds what probe reads of an answer (and prints of a
// failed one): /readyz names the refusal in a line or two.
const probeBodyBytes = 4 << 10

func newProbeCmd(s *streams) *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "probe URL",
		Short: "GET a sidecar endpoint on loopback: the exec probe of restricted mode",
		Long: `GET URL (http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH) and exit 0
when it answers 2xx, 1 otherwise (the status and the start of the answer, quoted,
go to stderr, which the kubelet shows in the probe's Event).

The webhook's restricted mode (podfim.io/privileges: restricted) probes the
sidecar's /readyz and /healthz with it: run inside the sidecar, it reaches the
endpoint on the pod's own loopback, where the kubelet's httpGet would need the
pod IP. Only loopback URLs are accepted: it is a probe, not a client.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// It runs in the sidecar's container, every 2 s: it must not
			// be the app's way into the sidecar's files (undumpable).
			if err := undumpable(); err != nil {
				return err
			}
			return runProbe(cmd.Context(), s, args[0], timeout)
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 1500*time.Millisecond, "give up after this long (below the probe's timeoutSeconds)")
	return c
}

func runProbe(ctx context.Context, s *streams, raw string, timeout time.Duration) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Port() == "" {
		return fail(ExitUsage, fmt.Errorf("probe URL %q: want http://127.0.0.1:PORT/PATH", raw))
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fail(ExitUsage, fmt.Errorf("probe URL %q: the host must be a loopback address", raw))
	}
	if timeout <= 0 {
		return fail(ExitUsage, fmt.Errorf("--timeout must be positive"))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail(ExitUsage, err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(s.errOut, "probe %s: %v\n", u.Redacted(), err)
		return checkStatus(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, probeBodyBytes))
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(s.errOut, "probe %s: %s %q\n", u.Redacted(), resp.Status, body)
		return checkStatus(1)
	}
	return nil
}
