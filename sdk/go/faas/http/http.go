// Package http holds the request and response types of a Wisp HTTP function, shaped after
// net/http so that handlers read like net/http code, without the weight of net/http in the guest.
package http

import (
	"errors"
	"io"
	"net/url"

	"github.com/wispfn/wisp/sdk/go/internal/body"
)

// Request is an HTTP request as the function sees it. A handler owns the Request and everything
// in it except Body's bytes, which are readable only until the handler returns (reads after that
// fail): a handler that needs the body later must read it first.
type Request struct {
	// Method is the HTTP method ("GET", "POST", ...).
	Method string

	// URL is the path and query the function is addressed with: the request path after the route
	// prefix ("/hello/a/b?x=1" routed by prefix "/hello" has Path "/a/b" and RawQuery "x=1").
	// It always has a Path starting with "/".
	URL *url.URL

	// RequestURI is the path and query as the client sent them, before the route prefix was
	// removed.
	RequestURI string

	// Header holds the request headers, keys in canonical form (see CanonicalHeaderKey).
	// The Host header is in Host.
	Header Header

	// Host is the host the client addressed (the Host header).
	Host string

	// RemoteAddr is the client's "ip:port".
	RemoteAddr string

	// ContentLength is the length of Body in bytes.
	ContentLength int64

	// Body is the request body; it is never nil and Close is not needed.
	Body Body
}

// Response is what a handler answers.
type Response struct {
	// StatusCode is the HTTP status, 100..999; 0 means 200.
	StatusCode int

	// Header holds the response headers; keys are sent as given.
	Header Header

	// Body is read to EOF and closed after the handler returns; nil means an empty body.
	Body Body
}

// Body is a request or response body. Any io.ReadCloser is a Body.
type Body interface {
	io.Reader
	io.Closer
}

// maxBody is the largest body the ABI can carry (lengths are u32).
const maxBody = 1<<32 - 1

// ErrBodyTooLarge is returned by NewBody for a body that the ABI cannot carry.
var ErrBodyTooLarge = errors.New("http: body longer than 4 GiB")

// NewBody returns a Body that reads b. It does not copy b: the caller must not modify b until the
// response is sent (after the handler returns). Such a body is sent without being copied through
// io.Reader. The only error is ErrBodyTooLarge.
func NewBody(b []byte) (Body, error) {
	if uint64(len(b)) > maxBody {
		return nil, ErrBodyTooLarge
	}
	return body.New(b), nil
}

// MustNewBody is NewBody for bodies known to fit; it panics on error.
func MustNewBody(b []byte) Body {
	r, err := NewBody(b)
	if err != nil {
		panic(err)
	}
	return r
}
