package webhook

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
)

// fakeListener hands out one end of a pipe per Accept and reports, at
// each call, whether a connection had been closed by then.
type fakeListener struct {
	closed   *atomic.Bool
	early    atomic.Int32 // Accept calls made beyond the limit before any close
	calls    atomic.Int32
	limit    int32
	accepted chan struct{}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	if f.calls.Add(1) > f.limit && !f.closed.Load() {
		f.early.Add(1)
	}
	c, _ := net.Pipe()
	f.accepted <- struct{}{}
	return c, nil
}
func (f *fakeListener) Close() error   { return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestLimitListener: with n connections open, Accept does not reach the
// listener until one of them closes; closing the listener ends a waiting
// Accept.
func TestLimitListener(t *testing.T) {
	var closed atomic.Bool
	f := &fakeListener{closed: &closed, limit: 2, accepted: make(chan struct{}, 3)}
	l := limitListener(f, 2, nil)
	var conns []net.Conn
	for range 2 {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	third := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		third <- err
	}()
	// Give a broken limiter the chance to call Accept a third time
	// before a connection closes: the fake records it (this cannot fail
	// a correct limiter, whatever the scheduling).
	for range 100 {
		runtime.Gosched()
	}
	closed.Store(true)
	conns[0].Close()
	if err := <-third; err != nil {
		t.Fatalf("the waiting Accept: %v", err)
	}
	if n := f.early.Load(); n != 0 {
		t.Errorf("%d Accept calls reached the listener while %d connections were open", n, 2)
	}
	// A closed connection gives its slot back once, even closed twice.
	conns[0].Close()
	if len(l.(*limited).slots) != 1 {
		t.Errorf("%d slots taken, want 1 (the second connection)", len(l.(*limited).slots))
	}
	// Closing the listener ends a waiting Accept.
	l2 := limitListener(&fakeListener{closed: &closed, limit: 99, accepted: make(chan struct{}, 3)}, 1, nil)
	if _, err := l2.Accept(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := l2.Accept(); done <- err }()
	l2.Close()
	if err := <-done; err == nil {
		t.Error("Accept after Close succeeded")
	}
}
