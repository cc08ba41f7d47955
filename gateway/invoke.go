package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/wispfn/wisp/pool/abi"
)

// serveFunction is the request path: route, build the guest request, invoke, write the
// response. It allocates nothing per request in the steady state.
func (s *Server) serveFunction(ctx context.Context, rc *app.RequestContext) {
	start := time.Now()
	path := rc.Request.URI().PathOriginal()
	e, prefixLen := s.cat.table().lookup(rc.Request.Host(), path)
	if e == nil && s.cfg.Cluster != nil && s.forwarded(rc) {
		notReady(rc, nil) // the forwarding node routes it: this one will, once it has compiled it
		return
	}
	if e == nil {
		unroutedRequests.Inc()
		writeError(rc, errorf(http.StatusNotFound, "no function serves %s", path))
		return
	}
	status := s.schedule(ctx, rc, e, path[prefixLen:])
	e.stats.observe(status, start)
}

func (s *Server) invoke(ctx context.Context, rc *app.RequestContext, e *entry, rest []byte) int {
	if e.fn == nil {
		writeError(rc, errorf(http.StatusServiceUnavailable, "function %q runs only on the nodes of pool %q, not on this node", e.meta.Name, s.cfg.Cluster.Sched.PoolOf(e.meta.Tenant)))
		return http.StatusServiceUnavailable
	}
	lim := e.fn.Limits()
	body := rc.Request.Body()
	if len(body) > lim.MaxRequestBytes {
		writeError(rc, errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes exceeds the limit of %d for function %q", len(body), lim.MaxRequestBytes, e.meta.Name))
		return http.StatusRequestEntityTooLarge
	}
	x := exchangePool.Get().(*exchange)
	defer x.release()
	x.rc = rc
	x.maxResponse = lim.MaxResponseBytes
	x.fill(rc, rest, body)
	if s.cfg.Cluster != nil && s.forwarded(rc) {
		x.addr = append(x.addr[:0], rc.Request.Header.Peek(clientHeader)...)
		x.req.RemoteAddr = x.addr
	}
	if err := e.fn.Invoke(ctx, &x.req, x.respond); err != nil {
		writeError(rc, err)
	}
	return rc.Response.StatusCode()
}

// exchange carries one request to the guest and its response back. Pooled; every buffer is
// reused. The prebound method values keep Invoke and VisitAll from allocating closures.
type exchange struct {
	req         abi.Request
	uri         []byte
	addr        []byte
	rc          *app.RequestContext
	maxResponse int
	visit       func(k, v []byte)
	respond     func(*abi.Response) error
}

var exchangePool = sync.Pool{New: func() any {
	x := &exchange{}
	x.visit = x.addHeader
	x.respond = x.writeResponse
	return x
}}

func (x *exchange) release() {
	x.rc = nil
	x.req.Reset()
	exchangePool.Put(x)
}

func (x *exchange) fill(rc *app.RequestContext, rest, body []byte) {
	uri := rc.Request.URI()
	x.uri = x.uri[:0]
	if len(rest) == 0 || rest[0] != '/' {
		x.uri = append(x.uri, '/')
	}
	x.uri = append(x.uri, rest...)
	if q := uri.QueryString(); len(q) > 0 {
		x.uri = append(x.uri, '?')
		x.uri = append(x.uri, q...)
	}
	x.addr = appendAddr(x.addr[:0], rc.RemoteAddr())

	r := &x.req
	r.Method = rc.Request.Header.Method()
	r.URI = x.uri
	r.FullURI = rc.Request.Header.RequestURI()
	r.Host = rc.Request.Host()
	r.RemoteAddr = x.addr
	r.Body = body
	rc.Request.Header.VisitAll(x.visit)
}

func (x *exchange) addHeader(k, v []byte) {
	if len(k) >= len(internalPrefix) && equalFold(k[:len(internalPrefix)], internalPrefix) {
		return // between gateways only
	}
	x.req.Headers = append(x.req.Headers, abi.Header{Name: k, Value: v})
}

func appendAddr(dst []byte, a net.Addr) []byte {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().AppendTo(dst)
	}
	if a == nil {
		return dst
	}
	return append(dst, a.String()...)
}

// writeResponse copies the guest's response (which aliases guest memory) into the Hertz
// response, compressing the body when the client accepts it.
func (x *exchange) writeResponse(resp *abi.Response) error {
	rc := x.rc
	h := &rc.Response.Header
	rc.SetStatusCode(resp.Status)
	for _, kv := range resp.Headers {
		switch {
		case equalFold(kv.Name, "content-type"):
			h.SetContentTypeBytes(kv.Value)
		case equalFold(kv.Name, "content-encoding"):
			h.SetContentEncodingBytes(kv.Value)
		case hopByHop(kv.Name):
			// The gateway owns framing and connection management.
		default:
			h.AddArgBytes(kv.Name, kv.Value, false)
		}
	}
	writeBody(rc, resp.Body)
	return nil
}

// hopByHop reports headers a guest may not set: the gateway frames the response itself.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 4:
		return equalFold(name, "date")
	case 6:
		return equalFold(name, "server")
	case 7:
		return equalFold(name, "trailer") || equalFold(name, "upgrade")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 14:
		return equalFold(name, "content-length")
	case 17:
		return equalFold(name, "transfer-encoding")
	}
	return false
}

// equalFold compares an ASCII header name with a lower-case constant, ignoring case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
