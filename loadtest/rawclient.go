package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"
)

// errKind sorts failed requests for Errors.
type errKind int

const (
	kindIO errKind = iota
	kindConnect
	kindTimeout
)

// reqError is a failed request with its kind.
type reqError struct {
	kind errKind
	err  error
}

func (e *reqError) Error() string { return e.err.Error() }
func (e *reqError) Unwrap() error { return e.err }

func kindOf(err error) errKind {
	var re *reqError
	if errors.As(err, &re) {
		return re.kind
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return kindTimeout
	}
	return kindIO
}

// caller sends one request and reads its response. Each worker owns one;
// it is not safe for concurrent use.
type caller interface {
	// do sends the request at now and returns the response status.
	do(now time.Time) (status int, err error)
	// close releases the connection; do may be called again after it and
	// reconnects. close may be called from another goroutine to interrupt
	// a do in progress.
	close()
}

// buildRequest returns the bytes of t's request, sent unchanged on every call.
func buildRequest(t *target) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wisp-loadtest\r\n", t.Method, t.reqURI, t.host)
	keys := make([]string, 0, len(t.Headers))
	for k := range t.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\r\n", k, t.Headers[k])
	}
	if len(t.Body) > 0 || t.Method == "POST" || t.Method == "PUT" || t.Method == "PATCH" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(t.Body))
	}
	b.WriteString("\r\n")
	b.Write(t.Body)
	return b.Bytes()
}

// connCaller is one kept-alive HTTP/1.1 connection on net.Conn, driven by
// its worker goroutine: the request is written whole, then the response is
// read and parsed, its body discarded. No pipelining: one request in flight
// per connection.
type connCaller struct {
	addr    string
	req     []byte
	timeout time.Duration
	dialer  net.Dialer

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
		n, err := c.conn.Read(c.buf)
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
