package webhook

import (
	"net"
	"sync"
	"time"

	"github.com/podfim/podfim/internal/metrics"
)

// Limits bound what clients can make the webhook hold. Zero fields take
// DefaultLimits' values. docs/webhook.md ("Limits") has the measurement
// they are chosen by.
type Limits struct {
	// MaxConnections is the most client connections open at once; beyond
	// it, new connections wait in the kernel's accept queue (no memory of
	// the webhook's) until one closes.
	MaxConnections int
	// MaxInFlight is the most AdmissionReviews read and decoded at once,
	// each up to MaxReviewBytes and about as much again decoded.
	MaxInFlight int
	// QueueWait is how long a review waits for a decoding slot before it
	// is refused with 429 (the API server then applies failurePolicy).
	QueueWait time.Duration
	// BodyTimeout is how long a review that holds a decoding slot may
	// take to send the rest of its body: a slow sender holds a slot (and
	// its buffer) no longer than the API server waits for an answer.
	BodyTimeout time.Duration
	// HeaderTimeout bounds the TLS handshake and the request headers;
	// ReadTimeout the whole request, WriteTimeout the response, IdleTimeout
	// a kept-alive connection between requests.
	HeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// Fixed bounds of a request.
const (
	// MaxReviewBytes bounds a request body: the API server stores objects
	// of at most 3 MiB (etcd's request limit is 1.5 MiB by default), and
	// a create's AdmissionReview carries the object once. A larger body is
	// refused (413) before it is read.
	MaxReviewBytes = 4 << 20
	maxHeaderBytes = 16 << 10
)

// DefaultLimits fit the chart's 128 MiB memory limit with room to spare:
// 256 idle connections cost about 10 MiB, 4 reviews of the largest size
// about 40 MiB (docs/webhook.md, "Limits").
func DefaultLimits() Limits {
	return Limits{
		MaxConnections: 256,
		MaxInFlight:    4,
		QueueWait:      2 * time.Second,
		BodyTimeout:    5 * time.Second,
		HeaderTimeout:  5 * time.Second,
		ReadTimeout:    15 * time.Second,
		WriteTimeout:   15 * time.Second,
		IdleTimeout:    90 * time.Second,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxConnections, d.MaxConnections)
	set(&l.MaxInFlight, d.MaxInFlight)
	setD(&l.QueueWait, d.QueueWait)
	setD(&l.BodyTimeout, d.BodyTimeout)
	setD(&l.HeaderTimeout, d.HeaderTimeout)
	setD(&l.ReadTimeout, d.ReadTimeout)
	setD(&l.WriteTimeout, d.WriteTimeout)
	setD(&l.IdleTimeout, d.IdleTimeout)
	return l
}

// limitListener accepts at most n connections open at once: Accept waits
// for one to close (as golang.org/x/net/netutil.LimitListener, counted).
// Waiting rather than closing the new connection keeps a legitimate client
// (the API server) in the queue behind a flood instead of failing it.
func limitListener(l net.Listener, n int, m *metrics.Webhook) net.Listener {
	return &limited{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{}), m: m}
}

type limited struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	m         *metrics.Webhook
}

func (l *limited) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	l.m.AddConnections(1)
	return &limitedConn{Conn: c, release: sync.OnceFunc(func() {
		<-l.slots
		l.m.AddConnections(-1)
	})}, nil
}

func (l *limited) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
