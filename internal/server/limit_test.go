package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// startLimited runs a server holding at most max connections and returns
// it, its address and the count of evicted connections.
func startLimited(t *testing.T, reg *prometheus.Registry, max int) (*Server, string, *atomic.Int64) {
	t.Helper()
	var evicted atomic.Int64
	s := New("127.0.0.1:0", reg, notStarted{}, nil)
	s.LimitConns(max, func() { evicted.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Listening():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	return s, s.Addr(), &evicted
}

// notStarted is the readiness of a sidecar before its first full check.
type notStarted struct{}

func (notStarted) Readiness(int) (bool, []string, int) { return false, nil, 0 }

// slowConn opens a connection that sends a request line and one header,
// and never finishes its request: a slowloris client.
func slowConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByServer waits (until deadline) for c to be closed by the server.
func closedByServer(c net.Conn, deadline time.Time) bool {
	c.SetReadDeadline(deadline)
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF || (err != nil && !isTimeout(err))
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A flood of slow connections is held to the cap: the connections beyond
// it are closed once their first bytes show a slow client, and a probe
// arriving after them takes the place of the oldest and is answered at once.
func TestConnLimitRefusesSlowAndAnswersProbes(t *testing.T) {
	const max, flood = 8, 200
	s, addr, evicted := startLimited(t, prometheus.NewRegistry(), max)
	conns := make([]net.Conn, flood)
	for i := range conns {
		conns[i] = slowConn(t, addr)
	}
	if !closedByServer(conns[flood-1], time.Now().Add(5*time.Second)) {
		t.Error("a slow connection beyond the cap is still open")
	}
	// A probe, as the kubelet sends it (one connection per probe).
	start := time.Now()
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("probe under the flood: %v", err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || took > time.Second {
		// Not started: 503 is the answer a probe must get, fast.
		t.Errorf("probe under the flood: %d after %v, want 503 within 1s", resp.StatusCode, took)
	}
	// The oldest slow connection made room for the probe; the newest
	// held one is still open.
	if !closedByServer(conns[0], time.Now().Add(5*time.Second)) {
		t.Error("the oldest slow connection is still open")
	}
	if closedByServer(conns[max-1], time.Now().Add(50*time.Millisecond)) {
		t.Error("the newest slow connection held was closed")
	}
	if n := s.ln.(*connLimiter).Open(); n > max {
		t.Errorf("%d connections held, want at most %d", n, max)
	}
	if n := evicted.Load(); n < flood-max {
		t.Errorf("%d connections refused or evicted, want at least %d", n, flood-max)
	}
}

// At the cap, a connection whose request arrives after it was accepted is
// waited for: a whole request is answered, silence is closed.
func TestConnLimitWaitsForFirstBytes(t *testing.T) {
	const max = 2
	_, addr, _ := startLimited(t, prometheus.NewRegistry(), max)
	for i := 0; i < max; i++ {
		slowConn(t, addr)
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	time.Sleep(50 * time.Millisecond) // the request comes late, after the accept
	if _, err := io.WriteString(late, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	late.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(late), nil)
	if err != nil {
		t.Fatalf("the late request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the late request: %d", resp.StatusCode)
	}
	if !closedByServer(silent, time.Now().Add(pendingWait+5*time.Second)) {
		t.Error("a silent connection at the cap is still open")
	}
}

// blockingCollector holds /metrics until release is closed.
type blockingCollector struct {
	desc    *prometheus.Desc
	entered chan struct{}
	release chan struct{}
}

func (b *blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *blockingCollector) Collect(ch chan<- prometheus.Metric) {
	close(b.entered)
	<-b.release
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, 1)
}

// A request being answered is never evicted: a scrape in progress survives
// the probes that take the place of idle and slow connections.
func TestConnLimitKeepsBusyConnections(t *testing.T) {
	const max = 2
	reg := prometheus.NewRegistry()
	bc := &blockingCollector{desc: prometheus.NewDesc("podfim_test_blocking", "test", nil, nil),
		entered: make(chan struct{}), release: make(chan struct{})}
	reg.MustRegister(bc)
	_, addr, evicted := startLimited(t, reg, max)

	scrape, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer scrape.Close()
	if _, err := io.WriteString(scrape, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-bc.entered
	slowConn(t, addr)
	// Probes arriving at the cap take the slow connection's place, then
	// each other's (answered, idle), never the scrape's.
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for i := 0; i < 5; i++ {
		resp, err := c.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("probe %d at the cap: %v", i, err)
		}
		resp.Body.Close()
	}
	if evicted.Load() < 1 {
		t.Error("no connection evicted for the probes")
	}
	close(bc.release)
	scrape.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(scrape), nil)
	if err != nil {
		t.Fatalf("the scrape in progress: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the scrape in progress: %d", resp.StatusCode)
	}
}
