// Package fetch sends HTTP requests from a function, shaped after net/http's Client.
//
// The host sends them: only to hosts on the function's allow-list (if it has one), never to
// loopback, private or link-local addresses unless the operator allows them, within a timeout
// (10s by default), a body size limit each way, and a few redirects (followed by the host).
// Start sends a request without waiting, so that several run at once: they take about as long as
// the slowest of them.
package fetch

import (
	"errors"
	"net/url"
	"time"

	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
)

// Error is the error type of failed fetches; errors.Is matches it against the sentinels below.
type Error = hostcall.Error

// Errors to test for with errors.Is.
var (
	// ErrDenied: the host is not on the function's allow-list, the scheme is not http or https,
	// or the address it resolves to is not allowed.
	ErrDenied = hostcall.ErrDenied
	// ErrTimeout: the request ran out of time.
	ErrTimeout = hostcall.ErrTimeout
	// ErrTooLarge: a body over its size limit.
	ErrTooLarge = hostcall.ErrTooLarge
	// ErrInvalid: a malformed request, or too many redirects.
	ErrInvalid = hostcall.ErrInvalid
	// ErrUnavailable: the server could not be reached or the connection failed.
	ErrUnavailable = hostcall.ErrUnavailable
	// ErrNoHost: the program is not running inside Wisp.
	ErrNoHost = hostcall.ErrNoHost
)

// Client sends requests. The zero value is usable; DefaultClient is one.
type Client struct {
	// Timeout bounds each request, redirects and body included; zero means the host's (10s by
	// default), and the host's is also the maximum.
	Timeout time.Duration
}

// DefaultClient is the Client of Do, Start and Get.
var DefaultClient = &Client{}

// Do sends req with DefaultClient.
func Do(req *http.Request) (*http.Response, error) { return DefaultClient.Do(req) }

// Start sends req with DefaultClient without waiting.
func Start(req *http.Request) *Future { return DefaultClient.Start(req) }

// Get fetches url with DefaultClient.
func Get(url string) (*http.Response, error) {
	req, err := NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	return DefaultClient.Do(req)
}

// NewRequest returns a request for method and the absolute url, with body (not copied: do not
// modify it until the request is sent).
func NewRequest(method, rawURL string, body []byte) (*http.Request, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if !u.IsAbs() {
		return nil, errors.New("fetch: url " + rawURL + " is not absolute")
	}
	b, err := http.NewBody(body)
	if err != nil {
		return nil, err
	}
	return &http.Request{Method: method, URL: u, Header: http.Header{}, Body: b, ContentLength: int64(len(body))}, nil
}

// Do sends req and waits for the response. Any status is a response, not an error. The body of
// req is read and closed; the response's body is in memory, and Close is optional.
func (c *Client) Do(req *http.Request) (*http.Response, error) { return c.Start(req).Wait() }

// Future is a request in flight.
type Future struct {
	c   *hostcall.Call
	err error
}

// buf is reused for every submission: the host copies it before Start returns.
var buf []byte

// Start sends req and returns without waiting for the response.
func (c *Client) Start(req *http.Request) *Future {
	if req == nil || req.URL == nil {
		return &Future{err: errors.New("fetch: request without a URL")}
	}
	b := hostcall.AppendString(buf[:0], req.Method)
	b = hostcall.AppendString(b, req.URL.String())
	b = hostcall.AppendHeader(b, req.Header)
	b, err := hostcall.AppendBody(b, req.Body)
	if err != nil {
		return &Future{err: errors.New("fetch: cannot read request body: " + err.Error())}
	}
	ms := uint64(max(c.Timeout, 0) / time.Millisecond)
	if c.Timeout > 0 && ms == 0 {
		ms = 1
	}
	b = hostcall.AppendU32(b, uint32(min(ms, 1<<32-1)))
	buf = b
	return &Future{c: hostcall.Start(hostcall.ProviderFetch, b)}
}

// Wait returns the response, or why there is none.
func (f *Future) Wait() (*http.Response, error) {
	if f.err != nil {
		return nil, f.err
	}
	res, err := f.c.Wait()
	if err != nil {
		return nil, err
	}
	return hostcall.DecodeResponse(res)
}
