// Package rpc calls other functions deployed on the same Wisp node, in-process: the callee gets
// an HTTP request (with a Wisp-Caller header naming the caller) and its response comes back as
// is, whatever its status.
//
// A chain of calls is limited in depth (8 hops by default), so a loop of functions calling each
// other ends with ErrDepth instead of exhausting the node. Start calls without waiting, so that
// several calls run at once.
package rpc

import (
	"errors"
	"net/url"

	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
)

// Error is the error type of failed calls; errors.Is matches it against the sentinels below.
type Error = hostcall.Error

// Errors to test for with errors.Is.
var (
	// ErrNotFound: no function of that name is deployed.
	ErrNotFound = hostcall.ErrNotFound
	// ErrDepth: the chain of calls reached its depth limit.
	ErrDepth = hostcall.ErrDepth
	// ErrDenied: the caller may not call that function.
	ErrDenied = hostcall.ErrDenied
	// ErrUnavailable: the callee failed (it trapped, panicked or ran out of time); the message
	// carries its error id.
	ErrUnavailable = hostcall.ErrUnavailable
	// ErrNoHost: the program is not running inside Wisp.
	ErrNoHost = hostcall.ErrNoHost
)

// NewRequest returns a request for method and uri (a path with an optional query, such as
// "/users/42?full=1"), with body (not copied: do not modify it until the call is made).
func NewRequest(method, uri string, body []byte) (*http.Request, error) {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, err
	}
	b, err := http.NewBody(body)
	if err != nil {
		return nil, err
	}
	return &http.Request{Method: method, URL: u, RequestURI: uri, Header: http.Header{}, Body: b, ContentLength: int64(len(body))}, nil
}

// Call calls function with req and waits for its response.
func Call(function string, req *http.Request) (*http.Response, error) {
	return Start(function, req).Wait()
}

// Future is a call in flight.
type Future struct {
	c   *hostcall.Call
	err error
}

// buf is reused for every submission: the host copies it before Start returns.
var buf []byte

// Start calls function with req and returns without waiting for the response.
func Start(function string, req *http.Request) *Future {
	if req == nil || req.URL == nil {
		return &Future{err: errors.New("rpc: request without a URL")}
	}
	b := hostcall.AppendString(buf[:0], function)
	b = hostcall.AppendString(b, req.Method)
	b = hostcall.AppendString(b, req.URL.RequestURI())
	b = hostcall.AppendHeader(b, req.Header)
	b, err := hostcall.AppendBody(b, req.Body)
	if err != nil {
		return &Future{err: errors.New("rpc: cannot read request body: " + err.Error())}
	}
	buf = b
	return &Future{c: hostcall.Start(hostcall.ProviderRPC, b)}
}

// Wait returns the callee's response, or why there is none.
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
