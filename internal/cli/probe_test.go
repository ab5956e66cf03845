package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUndumpable: the sidecar and probe commands make the process
// non-dumpable, which keeps a same-uid app out of its /proc/<pid>/root
// (TestKubeRestricted shows that on the kubelet).
func TestUndumpable(t *testing.T) {
	if err := undumpable(); err != nil {
		t.Fatal(err)
	}
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil || d != 0 {
		t.Fatalf("PR_GET_DUMPABLE = %d, %v; want 0", d, err)
	}
}

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.Write([]byte("ok\n"))
		case "/unready":
			http.Error(w, "open violation: /srv/www/index.html\x1b[2J"+strings.Repeat("x", 10<<10), http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"probe", srv.URL + "/readyz"}, 0, ""},
		{[]string{"probe", srv.URL + "/unready"}, 1, `503 Service Unavailable "open violation: /srv/www/index.html\x1b[2J`},
		{[]string{"probe", "http://127.0.0.1:1/readyz"}, 1, "connection refused"},
		{[]string{"probe", "http://192.0.2.1:9090/readyz"}, ExitUsage, "loopback"},
		{[]string{"probe", "https://127.0.0.1:9090/readyz"}, ExitUsage, "want http://127.0.0.1:PORT/PATH"},
		{[]string{"probe", "http://127.0.0.1/readyz"}, ExitUsage, "want http://127.0.0.1:PORT/PATH"},
		{[]string{"probe", "--timeout=0s", srv.URL}, ExitUsage, "--timeout"},
	} {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), tt.args, &out, &errOut)
		if code != tt.code || !strings.Contains(errOut.String(), tt.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), tt.code, tt.stderr)
		}
		if strings.ContainsRune(errOut.String(), '\x1b') || errOut.Len() > probeBodyBytes+200 {
			t.Errorf("%v: stderr is not quoted or not bounded (%d bytes)", tt.args, errOut.Len())
		}
	}
}
