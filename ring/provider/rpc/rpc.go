// Package rpc is the ring's provider for calls between functions: a guest calls another deployed
// function by name, in-process, through the pool (an Invoker), with an HTTP-shaped request and
// response. The call depth travels in the context, so a loop of functions calling each other
// stops at Config.MaxDepth instead of exhausting the node.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// Invoker runs deployed functions; the pool (or the gateway in front of it) implements it.
type Invoker interface {
	// Invoke runs function name with req on behalf of function caller, and hands the response
	// to fn before returning: resp and its slices are valid only during fn. ctx carries the
	// caller's deadline and the call depth; Invoke must run the callee under ctx (or a context
	// derived from it), so that the callee's own calls see the depth. An error wrapping
	// ErrNotFound reaches the guest as CodeNotFound, ErrDenied as CodeDenied, a passed deadline
	// as CodeTimeout, anything else (a callee that faulted) as CodeUnavailable. If fn returns an
	// error, Invoke returns it.
	Invoke(ctx context.Context, caller, name string, req *abi.Request, fn func(resp *abi.Response) error) error
}

// Errors an Invoker wraps so that the guest gets the right code.
var (
	ErrNotFound = errors.New("no such function")
	ErrDenied   = errors.New("call not allowed")
)

// CallerHeader names the caller in the callee's request. The provider sets it, replacing any
// value the caller sent.
const CallerHeader = "Wisp-Caller"

type depthKey struct{}

// WithDepth returns ctx carrying call depth d (the number of rpc hops behind the request).
func WithDepth(ctx context.Context, d int) context.Context {
	return context.WithValue(ctx, depthKey{}, d)
}

// Depth returns the call depth ctx carries; 0 for a request that came from a client.
func Depth(ctx context.Context) int {
	d, _ := ctx.Value(depthKey{}).(int)
	return d
}

// Config configures the provider. Zero fields take their defaults.
type Config struct {
	// Invoker runs the callee. Required.
	Invoker Invoker
	// MaxDepth caps the hops of a chain of calls. Default 8.
	MaxDepth int
	// MaxRequestBody caps the body a guest sends, in bytes. Default 1 MiB.
	MaxRequestBody int
	// MaxResponseBody caps the body a guest receives, in bytes. Default 8 MiB.
	MaxResponseBody int
	// MaxConcurrent caps the calls in flight on the node. Default 512.
	MaxConcurrent int
}

// Defaults of Config.
const (
	DefaultMaxDepth        = 8
	DefaultMaxRequestBody  = 1 << 20
	DefaultMaxResponseBody = 8 << 20
	DefaultMaxConcurrent   = 512
)

// Provider is the rpc provider.
type Provider struct {
	cfg    Config
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	callsTotal = metrics.GetOrCreateCounter(`wisp_ring_rpc_calls_total`)
	depthTotal = metrics.GetOrCreateCounter(`wisp_ring_rpc_depth_exceeded_total`)
)

// New returns an rpc provider.
func New(cfg Config) *Provider {
	if cfg.MaxDepth == 0 {
		cfg.MaxDepth = DefaultMaxDepth
	}
	if cfg.MaxRequestBody == 0 {
		cfg.MaxRequestBody = DefaultMaxRequestBody
	}
	if cfg.MaxResponseBody == 0 {
		cfg.MaxResponseBody = DefaultMaxResponseBody
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	return &Provider{cfg: cfg}
}

// Info describes the provider to the ring.
func (p *Provider) Info() ring.ProviderInfo {
	return ring.ProviderInfo{ID: ring.ProviderRPC, Name: "rpc", MaxPayload: p.cfg.MaxRequestBody + 64<<10}
}

// Provision prepares the provider.
func (p *Provider) Provision(ring.Env) error {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.sem = make(chan struct{}, p.cfg.MaxConcurrent)
	return nil
}

// Validate checks the configuration.
func (p *Provider) Validate() error {
	switch {
	case p.cfg.Invoker == nil:
		return errors.New("no invoker: set Config.Invoker")
	case p.cfg.MaxDepth < 1 || p.cfg.MaxRequestBody < 0 || p.cfg.MaxResponseBody < 0 || p.cfg.MaxConcurrent < 1:
		return fmt.Errorf("max depth %d, body limits %d and %d, max concurrent %d: out of range",
			p.cfg.MaxDepth, p.cfg.MaxRequestBody, p.cfg.MaxResponseBody, p.cfg.MaxConcurrent)
	}
	return nil
}

// Cleanup waits for the calls in flight; each ends with its caller's request.
func (p *Provider) Cleanup() error {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	return nil
}

// Serve starts a goroutine per call, at most MaxConcurrent at once (Serve blocks beyond that).
func (p *Provider) Serve(batch []*ring.Call) {
	for _, c := range batch {
		select {
		case p.sem <- struct{}{}:
		case <-p.ctx.Done():
			c.Fail(ring.CodeClosed, errors.New("the host is shutting down"))
			continue
		}
		p.wg.Add(1)
		go func() {
			defer func() {
				<-p.sem
				p.wg.Done()
			}()
			p.call(c)
		}()
	}
}

// Request is a decoded rpc submission.
type Request struct {
	Function string
	abi.Request
}

// Decode decodes an rpc submission (docs/hostcalls.md). Slices alias b.
func Decode(b []byte) (Request, error) {
	d := wire.NewDecoder(b)
	r := Request{Function: d.Str("function")}
	r.Method = d.Bytes("method")
	r.URI = d.Bytes("uri")
	if n := d.Count("header count", 8); n > 0 {
		r.Headers = make([]abi.Header, 0, n+1)
		for range n {
			name, value := d.Bytes("header name"), d.Bytes("header value")
			if !strings.EqualFold(string(name), CallerHeader) {
				r.Headers = append(r.Headers, abi.Header{Name: name, Value: value})
			}
		}
	}
	r.Body = d.Bytes("body")
	if err := d.End(); err != nil {
		return Request{}, fmt.Errorf("cannot decode rpc call: %w", err)
	}
	switch {
	case r.Function == "":
		return Request{}, errors.New("no function named")
	case len(r.Method) == 0:
		r.Method = []byte("GET")
	}
	if len(r.URI) == 0 {
		r.URI = []byte("/")
	} else if r.URI[0] != '/' {
		return Request{}, fmt.Errorf("uri %q does not start with \"/\"", r.URI)
	}
	return r, nil
}

func (p *Provider) call(c *ring.Call) {
	r, err := Decode(c.Payload())
	if err != nil {
		c.Fail(ring.CodeInvalid, err)
		return
	}
	if len(r.Body) > p.cfg.MaxRequestBody {
		c.Fail(ring.CodeTooLarge, fmt.Errorf("request body of %d bytes is over the limit of %d bytes", len(r.Body), p.cfg.MaxRequestBody))
		return
	}
	caller := c.Function().Name()
	depth := Depth(c.Context()) + 1
	if depth > p.cfg.MaxDepth {
		depthTotal.Inc()
		c.Fail(ring.CodeDepth, fmt.Errorf("cannot call %q from %q: call depth limit of %d reached", r.Function, caller, p.cfg.MaxDepth))
		return
	}
	callsTotal.Inc()
	r.FullURI = r.URI
	r.Host = []byte(r.Function)
	r.Headers = append(r.Headers, abi.Header{Name: []byte(CallerHeader), Value: []byte(caller)})
	ctx, cancel := context.WithCancel(WithDepth(c.Context(), depth))
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()

	var out []byte
	err = p.cfg.Invoker.Invoke(ctx, caller, r.Function, &r.Request, func(resp *abi.Response) error {
		if len(resp.Body) > p.cfg.MaxResponseBody {
			return fmt.Errorf("%w: response body of %d bytes is over the limit of %d bytes", errTooLarge, len(resp.Body), p.cfg.MaxResponseBody)
		}
		out = wire.AppendU32(c.Result(), uint32(resp.Status))
		out = wire.AppendU32(out, uint32(len(resp.Headers)))
		for _, h := range resp.Headers {
			out = wire.AppendBytes(wire.AppendBytes(out, h.Name), h.Value)
		}
		out = wire.AppendBytes(out, resp.Body)
		return nil
	})
	if err != nil {
		code := ring.CodeUnavailable
		switch {
		case errors.Is(err, errTooLarge):
			code = ring.CodeTooLarge
		case errors.Is(err, ErrNotFound):
			code = ring.CodeNotFound
		case errors.Is(err, ErrDenied):
			code = ring.CodeDenied
		case errors.Is(err, context.DeadlineExceeded):
			code = ring.CodeTimeout
		}
		c.Fail(code, fmt.Errorf("cannot call %q from %q: %w", r.Function, caller, err))
		return
	}
	if out == nil {
		c.Fail(ring.CodeUnavailable, fmt.Errorf("cannot call %q from %q: the invoker returned no response", r.Function, caller))
		return
	}
	c.Complete(out)
}

var errTooLarge = errors.New("too large")
