package loadtest

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// connCaller is one kept-alive HTTP/1.1 connection on net.Conn, driven by
// its worker goroutine: the request is written whole, then the response is
// read and parsed, its body discarded. No pipelining: one request in flight
// per connection.
type connCaller struct {
	addr    string
	req     []byte
	timeout time.Duration
	dialer  net.Dialer
	busy    bool // spin on non-blocking reads instead of sleeping (busyRead)

	conn net.Conn // nil until dialed and after a failure; the worker's
	buf  []byte
	p    respParser

	mu     sync.Mutex // guards live and closed, for close from another goroutine
	live   net.Conn
	closed bool
}

func newConnCaller(t *target, req []byte) *connCaller {
	return &connCaller{
		addr:    t.addr,
		req:     req,
		timeout: t.Timeout,
		dialer:  net.Dialer{Timeout: t.Timeout},
		buf:     make([]byte, 16<<10),
		p:       respParser{head: t.Method == "HEAD"},
	}
}

func (c *connCaller) do(now time.Time) (int, error) {
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return 0, err
		}
		now = time.Now()
	}
	if err := c.conn.SetDeadline(now.Add(c.timeout)); err != nil {
		return 0, c.fail(err)
	}
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, c.fail(err)
	}
	c.p.reset()
	for {
		var n int
		var err error
		if c.busy {
			n, err = busyRead(c.conn, c.buf, now.Add(c.timeout))
		} else {
			n, err = c.conn.Read(c.buf)
		}
		if n > 0 {
			used, done, perr := c.p.feed(c.buf[:n])
			if perr != nil {
				return 0, c.fail(perr)
			}
			if done {
				if !c.p.keepAlive || used < n {
					c.drop() // closing, or sent more than one response
				}
				return c.p.status, nil
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && c.p.eof() {
				c.drop()
				return c.p.status, nil
			}
			return 0, c.fail(err)
		}
	}
}

func (c *connCaller) dial() error {
	conn, err := c.dialer.Dial("tcp", c.addr)
	if err != nil {
		kind := kindConnect
		if kindOf(err) == kindTimeout {
			kind = kindTimeout
		}
		return &reqError{kind, err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = conn.Close()
		return &reqError{kindIO, net.ErrClosed}
	}
	c.conn, c.live = conn, conn
	return nil
}

func (c *connCaller) fail(err error) error {
	c.drop()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (c *connCaller) drop() {
	if c.conn == nil {
		return
	}
	c.mu.Lock()
	c.live = nil
	c.mu.Unlock()
	_ = c.conn.Close()
	c.conn = nil
}

// close stops further dialing and interrupts a request in progress by
// expiring its connection's deadline; the worker closes the connection.
func (c *connCaller) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.live != nil {
		_ = c.live.SetDeadline(time.Unix(1, 0))
	}
}
