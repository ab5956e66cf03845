package server

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxConns bounds the connections the server holds open. The app
// shares the pod's network namespace, so every port the sidecar serves is
// the app's to flood: 12,000 slow connections (a request line, then a
// header a second) cost an unbounded server ~12 KiB each and OOM-killed a
// sidecar in 128 MiB. A kubelet probing and a Prometheus scraping need a
// handful; 64 connections cost at most ~2 MiB (see docs/security.md).
const DefaultMaxConns = 64

// connLimiter is a net.Listener that holds at most max connections. The
// app shares the pod's network namespace and can open connections faster
// than any server can serve them, so what matters under a flood is what a
// new connection costs and which connections keep their place:
//
//   - Below the cap every connection is served.
//   - At the cap, a connection whose whole request header arrives at once
//     (a probe or a scrape sends its request in one write) takes the place
//     of the oldest held connection that is neither being answered nor such
//     a prompt one; until its first request is answered it is not evicted
//     itself. Whether it is prompt is seen with a non-blocking MSG_PEEK at
//     accept, or, when nothing has arrived yet, by a waiter that holds it
//     until its first bytes arrive (at most maxPending waiters, the oldest
//     closed first, each at most pendingWait).
//   - Any other connection at the cap (a slow client: the flood) is closed
//     as soon as its first bytes show it, before net/http spends a
//     goroutine and buffers on it.
//
// Evicting the oldest slow connection for every new one instead made the
// flood churn: each eviction was redialled at once, and the accept queue
// (FIFO, shared with the kubelet) grew to seconds. Refusing early costs the
// server an accept, a peek and a close, less than the client's dial, so the
// queue stays short and probes are answered within milliseconds.
type connLimiter struct {
	net.Listener
	max int
	// evicted is called, outside the lock, for each connection closed to
	// make room or refused at the cap.
	evicted func()

	start  sync.Once
	out    chan net.Conn // admitted connections, to Accept
	errc   chan error    // the inner listener's error, once
	closed chan struct{} // closed by Close
	stop   sync.Once

	mu      sync.Mutex
	conns   *list.List // of *limitedConn held, oldest first
	pending *list.List // of *limitedConn waited for, oldest first
	byFD    map[int]*limitedConn
	ep      int // epoll instance watching the pending connections; -1: none
	// wake is an eventfd in ep that wakes poll for a first pending
	// connection (to wait for its deadline) and for Close; -1: none.
	wake int
}

// The waiters of connections whose first bytes have not arrived at the cap.
const (
	maxPending  = 4096
	pendingWait = 500 * time.Millisecond
	// peekBytes is how much of a request is looked at: a probe's or a
	// scrape's header is a few hundred bytes.
	peekBytes = 1 << 10
)

func newConnLimiter(ln net.Listener, max int, evicted func()) *connLimiter {
	if max <= 0 {
		max = DefaultMaxConns
	}
	if evicted == nil {
		evicted = func() {}
	}
	return &connLimiter{Listener: ln, max: max, evicted: evicted,
		out: make(chan net.Conn), errc: make(chan error, 1), closed: make(chan struct{}),
		conns: list.New(), pending: list.New(), byFD: map[int]*limitedConn{}, ep: -1, wake: -1}
}

// Accept returns the next connection the limiter admits.
func (l *connLimiter) Accept() (net.Conn, error) {
	l.start.Do(func() {
		// Without the epoll instance, connections whose request has not
		// arrived at the cap are refused at once.
		ep, wake := newPoller()
		l.mu.Lock() // Close may kick already
		l.ep, l.wake = ep, wake
		l.mu.Unlock()
		if ep >= 0 {
			go l.poll()
		}
		go l.loop()
	})
	select {
	case c := <-l.out:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // for later calls
		return nil, err
	}
}

// newPoller returns an epoll instance and an eventfd in it, or -1, -1.
func newPoller() (ep, wake int) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, -1
	}
	wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err == nil {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
		if err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
			unix.Close(wake)
		}
	}
	if err != nil {
		unix.Close(ep)
		return -1, -1
	}
	return ep, wake
}

// kick wakes poll.
func (l *connLimiter) kick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(l.wake, one[:])
	}
}

// Close closes the listener; connections already held stay open.
func (l *connLimiter) Close() error {
	l.stop.Do(func() {
		close(l.closed)
		l.kick()
	})
	return l.Listener.Close()
}

// loop accepts connections and sorts them until the listener fails.
func (l *connLimiter) loop() {
	var buf [peekBytes]byte
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				// Out of descriptors or memory for a moment: net/http
				// would retry too. The connections held are bounded, so
				// this passes.
				select {
				case <-l.closed:
				case <-time.After(10 * time.Millisecond):
					continue
				}
			}
			l.errc <- err
			return
		}
		lc := &limitedConn{Conn: c, l: l}
		if l.Open() < l.max {
			l.deliver(lc, false)
			continue
		}
		switch n, complete := peekRequest(c, buf[:]); {
		case complete:
			l.deliver(lc, true)
		case n > 0:
			l.refuse(lc)
		default:
			l.wait(lc)
		}
	}
}

// wait holds lc, whose first bytes have not arrived, in the pending set
// until they do (or pendingWait passes). The pending connections are
// watched by one epoll instance and one goroutine, not a goroutine each:
// a flood whose connections send nothing at first fills the set, and a
// probe among them must stay long enough for its request to arrive.
func (l *connLimiter) wait(lc *limitedConn) {
	fd := -1
	if rc, err := lc.Conn.(syscall.Conn).SyscallConn(); err == nil {
		_ = rc.Control(func(f uintptr) { fd = int(f) })
	}
	l.mu.Lock()
	if l.ep < 0 || fd < 0 {
		l.mu.Unlock()
		l.refuse(lc)
		return
	}
	var oldest *limitedConn
	if l.pending.Len() >= maxPending {
		oldest = l.unpend(l.pending.Front().Value.(*limitedConn))
	}
	lc.fd, lc.since = fd, time.Now()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.mu.Unlock()
		l.refuse(lc)
	} else {
		lc.elem = l.pending.PushBack(lc)
		l.byFD[fd] = lc
		first := l.pending.Len() == 1
		l.mu.Unlock()
		if first {
			l.kick() // poll sleeps without a deadline while none waits
		}
	}
	if oldest != nil {
		l.refuse(oldest)
	}
}

// unpend takes lc out of the pending set; l.mu is held.
func (l *connLimiter) unpend(lc *limitedConn) *limitedConn {
	l.pending.Remove(lc.elem)
	lc.elem = nil
	delete(l.byFD, lc.fd)
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, lc.fd, nil)
	return lc
}

// poll delivers or refuses the pending connections whose first bytes
// arrived, and refuses those that waited pendingWait, until the listener
// is closed. It sleeps until the oldest pending connection's deadline, or
// without one while none waits: an idle sidecar's server wakes for
// nothing (it woke 8 times a second before, a tenth of a millicore).
func (l *connLimiter) poll() {
	var buf [peekBytes]byte
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(l.ep, events, l.pollTimeout())
		select {
		case <-l.closed:
			l.closePending()
			return
		default:
		}
		if err != nil && err != unix.EINTR {
			n = 0
		}
		var ready, expired []*limitedConn
		l.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == l.wake {
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:]) // reset the eventfd's count
				continue
			}
			if lc, ok := l.byFD[int(ev.Fd)]; ok {
				ready = append(ready, l.unpend(lc))
			}
		}
		for e := l.pending.Front(); e != nil && time.Since(e.Value.(*limitedConn).since) > pendingWait; e = l.pending.Front() {
			expired = append(expired, l.unpend(e.Value.(*limitedConn)))
		}
		l.mu.Unlock()
		for _, lc := range ready {
			if _, complete := peekRequest(lc.Conn, buf[:]); complete {
				l.deliver(lc, true)
			} else {
				l.refuse(lc)
			}
		}
		for _, lc := range expired {
			l.refuse(lc)
		}
	}
}

// pollTimeout is how long poll may sleep, in milliseconds: until the
// oldest pending connection waited pendingWait, or -1 (no deadline) while
// none waits.
func (l *connLimiter) pollTimeout() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.pending.Front()
	if e == nil {
		return -1
	}
	left := pendingWait - time.Since(e.Value.(*limitedConn).since)
	return max(int(left/time.Millisecond)+1, 1)
}

// closePending closes every pending connection and the poller, once the
// listener is closed.
func (l *connLimiter) closePending() {
	l.mu.Lock()
	var all []*limitedConn
	for e := l.pending.Front(); e != nil; e = l.pending.Front() {
		all = append(all, l.unpend(e.Value.(*limitedConn)))
	}
	_ = unix.Close(l.wake)
	_ = unix.Close(l.ep)
	l.ep, l.wake = -1, -1
	l.mu.Unlock()
	for _, lc := range all {
		_ = lc.Conn.Close()
	}
}

// deliver hands lc to Accept if admit lets it in, and refuses it otherwise.
func (l *connLimiter) deliver(lc *limitedConn, prompt bool) {
	lc.prompt.Store(prompt)
	if !l.admit(lc) {
		l.refuse(lc)
		return
	}
	select {
	case l.out <- lc:
	case <-l.closed:
		_ = lc.Close()
	}
}

func (l *connLimiter) refuse(lc *limitedConn) {
	_ = lc.Conn.Close()
	l.evicted()
}

// admit holds lc, making room for it when it is prompt, and reports
// whether it holds it.
func (l *connLimiter) admit(lc *limitedConn) bool {
	l.mu.Lock()
	var victim *limitedConn
	if l.conns.Len() >= l.max && lc.prompt.Load() {
		for e := l.conns.Front(); e != nil; e = e.Next() {
			if cand := e.Value.(*limitedConn); cand.busy.Load() == 0 && !cand.prompt.Load() {
				victim = cand
				l.conns.Remove(e)
				cand.elem = nil
				break
			}
		}
	}
	ok := l.conns.Len() < l.max
	if ok {
		lc.elem = l.conns.PushBack(lc)
	}
	l.mu.Unlock()
	if victim != nil {
		l.refuse(victim)
	}
	return ok
}

// peekRequest looks at what waits in c's socket without consuming it: how
// many bytes (up to len(buf)), and whether they hold a whole request
// header. It never waits.
func peekRequest(c net.Conn, buf []byte) (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	n := 0
	err = rc.Read(func(fd uintptr) bool {
		n, _, _ = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		n = max(n, 0)
		return true
	})
	return n, err == nil && n > 0 && bytes.Contains(buf[:n], []byte("\r\n\r\n"))
}

// Open returns the number of connections held.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns.Len()
}

func (l *connLimiter) remove(c *limitedConn) {
	l.mu.Lock()
	if c.elem != nil {
		l.conns.Remove(c.elem)
		c.elem = nil
	}
	l.mu.Unlock()
}

// limitedConn is a connection held by a connLimiter.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	elem *list.Element // in l.conns or l.pending; nil once removed; guarded by l.mu
	// busy counts the requests of this connection being answered: those
	// are never evicted.
	busy atomic.Int32
	// While pending (see wait): its descriptor and since when it waits.
	fd    int
	since time.Time
	// prompt is set when the first request was whole at accept, until it
	// is answered: such a connection is not evicted either.
	prompt atomic.Bool
}

func (c *limitedConn) Close() error {
	c.l.remove(c)
	return c.Conn.Close()
}

type connKey struct{}

// connContext puts the connection into the context of its requests, so
// that busy can mark it while a handler runs (http.Server.ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// busy marks the connection of each request as being answered while h runs.
func busy(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, ok := r.Context().Value(connKey{}).(*limitedConn); ok {
			lc.busy.Add(1)
			defer func() {
				lc.prompt.Store(false) // answered: now idle like any other
				lc.busy.Add(-1)
			}()
		}
		h.ServeHTTP(w, r)
	})
}
