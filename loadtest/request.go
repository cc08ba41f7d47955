package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
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
	// close stops the caller for good: no new connection is made, and a
	// do in progress is interrupted where the client allows it. Any
	// goroutine may call it.
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
