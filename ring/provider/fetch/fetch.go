// Package fetch is the ring's outbound HTTP provider. A guest's request goes out only if its host
// is on the function's allow-list (ring.FetchPolicy) and every address the provider connects to,
// after DNS resolution and at each redirect, is outside the ranges the operator has not allowed:
// loopback, private, link-local, and always unspecified, multicast and broadcast. Checking the
// dialed address rather than the name defeats DNS rebinding. Requests have timeouts, size limits
// on both bodies and a bounded number of redirects.
//
// Each fetch runs on its own goroutine (at most Config.MaxConcurrent at once), so a guest's
// concurrent fetches take about as long as the slowest of them.
package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// Config configures the provider. Zero fields take their defaults; the address ranges are
// refused unless allowed.
type Config struct {
	// AllowLoopback lets guests reach 127.0.0.0/8 and ::1 (for tests and local development).
	AllowLoopback bool
	// AllowPrivate lets guests reach private ranges: 10/8, 172.16/12, 192.168/16, 100.64/10
	// (carrier-grade NAT) and fc00::/7.
	AllowPrivate bool
	// AllowLinkLocal lets guests reach 169.254/16 (cloud metadata services live there) and
	// fe80::/10.
	AllowLinkLocal bool

	// Timeout bounds one fetch, redirects included; a guest may ask for less. Default 10s.
	// The request's own deadline bounds it too.
	Timeout time.Duration
	// MaxRequestBody caps the body a guest sends, in bytes. Default 1 MiB.
	MaxRequestBody int
	// MaxResponseBody caps the body a guest receives, in bytes. Default 4 MiB.
	MaxResponseBody int
	// MaxRedirects caps the redirects followed; 0 means the default, 5; -1 follows none (the
	// guest gets the 3xx).
	MaxRedirects int
	// MaxConcurrent caps the fetches in flight on the node. Default 512.
	MaxConcurrent int
}

// Defaults of Config.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultMaxRequestBody  = 1 << 20
	DefaultMaxResponseBody = 4 << 20
	DefaultMaxRedirects    = 5
	DefaultMaxConcurrent   = 512
)

// Provider is the fetch provider.
type Provider struct {
	cfg    Config
	client *http.Client
	sem    chan struct{}
	ctx    context.Context // ends at Cleanup, aborting fetches in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	fetchSeconds = metrics.GetOrCreatePrometheusHistogramExt(`wisp_ring_fetch_seconds`, metrics.ExponentialBuckets(1e-3, 2, 15))
	deniedTotal  = metrics.GetOrCreateCounter(`wisp_ring_fetch_denied_total`)
)

// New returns a fetch provider.
func New(cfg Config) *Provider {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRequestBody == 0 {
		cfg.MaxRequestBody = DefaultMaxRequestBody
	}
	if cfg.MaxResponseBody == 0 {
		cfg.MaxResponseBody = DefaultMaxResponseBody
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	return &Provider{cfg: cfg}
}

// Info describes the provider to the ring.
func (p *Provider) Info() ring.ProviderInfo {
	return ring.ProviderInfo{ID: ring.ProviderFetch, Name: "fetch", MaxPayload: p.cfg.MaxRequestBody + 64<<10}
}

// Provision builds the HTTP client.
func (p *Provider) Provision(ring.Env) error {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.sem = make(chan struct{}, p.cfg.MaxConcurrent)
	dialer := &net.Dialer{Timeout: p.cfg.Timeout, KeepAlive: 30 * time.Second, Control: p.control}
	p.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would dial for us, past the address check
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   p.cfg.Timeout,
			ExpectContinueTimeout: time.Second,
		},
		CheckRedirect: p.checkRedirect,
	}
	return nil
}

// Validate checks the configuration.
func (p *Provider) Validate() error {
	if p.cfg.Timeout < 0 || p.cfg.MaxRequestBody < 0 || p.cfg.MaxResponseBody < 0 || p.cfg.MaxRedirects < -1 || p.cfg.MaxConcurrent < 1 {
		return fmt.Errorf("timeout %v, body limits %d and %d, max redirects %d, max concurrent %d: out of range",
			p.cfg.Timeout, p.cfg.MaxRequestBody, p.cfg.MaxResponseBody, p.cfg.MaxRedirects, p.cfg.MaxConcurrent)
	}
	return nil
}

// Cleanup aborts fetches in flight and waits for them.
func (p *Provider) Cleanup() error {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
	return nil
}

// Serve starts a goroutine per call. It blocks while MaxConcurrent fetches are in flight, which
// backs submissions up into the ring (guests then get CodeBusy) rather than piling up goroutines.
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
			p.fetch(c)
		}()
	}
}

// Request is a decoded fetch submission.
type Request struct {
	Method  string
	URL     string
	Header  http.Header
	Body    []byte // aliases the payload
	Timeout time.Duration
}

// Decode decodes a fetch submission (docs/hostcalls.md).
func Decode(b []byte) (Request, error) {
	d := wire.NewDecoder(b)
	r := Request{Method: d.Str("method"), URL: d.Str("url")}
	if n := d.Count("header count", 8); n > 0 {
		r.Header = make(http.Header, n)
		for range n {
			name, value := d.Str("header name"), d.Str("header value")
			if d.Err() == nil && !validHeader(name, value) {
				d.Fail(fmt.Sprintf("header %q: %q is not a valid HTTP header", name, value))
			}
			r.Header.Add(name, value)
		}
	}
	r.Body = d.Bytes("body")
	r.Timeout = time.Duration(d.U32("timeout_ms")) * time.Millisecond
	if err := d.End(); err != nil {
		return Request{}, fmt.Errorf("cannot decode fetch: %w", err)
	}
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	if !validToken(r.Method) {
		return Request{}, fmt.Errorf("method %q is not an HTTP token", r.Method)
	}
	return r, nil
}

// policyKey carries the function's policy to checkRedirect through the request's context.
type policyKey struct{}

func (p *Provider) fetch(c *ring.Call) {
	r, err := Decode(c.Payload())
	if err != nil {
		c.Fail(ring.CodeInvalid, err)
		return
	}
	if len(r.Body) > p.cfg.MaxRequestBody {
		c.Fail(ring.CodeTooLarge, fmt.Errorf("request body of %d bytes is over the limit of %d bytes", len(r.Body), p.cfg.MaxRequestBody))
		return
	}
	policy := c.Function().Fetch()
	u, err := url.Parse(r.URL)
	if err != nil {
		c.Fail(ring.CodeInvalid, fmt.Errorf("cannot parse url %q: %w", r.URL, err))
		return
	}
	if err := allowedURL(u, policy); err != nil {
		deniedTotal.Inc()
		c.Fail(ring.CodeDenied, err)
		return
	}
	timeout := p.cfg.Timeout
	if r.Timeout > 0 && r.Timeout < timeout {
		timeout = r.Timeout
	}
	ctx, cancel := context.WithTimeout(context.WithValue(c.Context(), policyKey{}, policy), timeout)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()

	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bodyReader(r.Body))
	if err != nil {
		c.Fail(ring.CodeInvalid, fmt.Errorf("cannot make request %s %q: %w", r.Method, r.URL, err))
		return
	}
	if r.Header != nil {
		req.Header = r.Header
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.fail(c, ctx, r, err)
		return
	}
	defer resp.Body.Close()
	if resp.ContentLength > int64(p.cfg.MaxResponseBody) {
		c.Fail(ring.CodeTooLarge, fmt.Errorf("%s %q: response body of %d bytes is over the limit of %d bytes",
			r.Method, r.URL, resp.ContentLength, p.cfg.MaxResponseBody))
		return
	}
	out := c.Result()
	out = wire.AppendU32(out, uint32(resp.StatusCode))
	n := 0
	for _, vs := range resp.Header {
		n += len(vs)
	}
	out = wire.AppendU32(out, uint32(n))
	for k, vs := range resp.Header {
		for _, v := range vs {
			out = wire.AppendStr(wire.AppendStr(out, k), v)
		}
	}
	at := len(out)
	out = wire.AppendU32(out, 0)
	out, err = readAll(out, io.LimitReader(resp.Body, int64(p.cfg.MaxResponseBody)+1))
	if err != nil {
		p.fail(c, ctx, r, err)
		return
	}
	size := len(out) - at - 4
	if size > p.cfg.MaxResponseBody {
		c.Fail(ring.CodeTooLarge, fmt.Errorf("%s %q: response body is over the limit of %d bytes", r.Method, r.URL, p.cfg.MaxResponseBody))
		return
	}
	wire.PutU32(out[at:], uint32(size))
	fetchSeconds.UpdateDuration(start)
	c.Complete(out)
}

func (p *Provider) fail(c *ring.Call, ctx context.Context, r Request, err error) {
	code := ring.CodeUnavailable
	switch {
	case errors.Is(err, errDenied):
		deniedTotal.Inc()
		code = ring.CodeDenied
	case errors.Is(err, errTooManyRedirects):
		code = ring.CodeInvalid
	case ctx.Err() != nil && p.ctx.Err() != nil:
		code = ring.CodeClosed
	case ctx.Err() != nil:
		code = ring.CodeTimeout
	}
	c.Fail(code, fmt.Errorf("cannot fetch %s %q: %w", r.Method, r.URL, err))
}

// bodyReader reads a copy of b: the transport may still read the body after Do returns, and b
// belongs to the call, which is recycled once completed.
func bodyReader(b []byte) io.Reader {
	if len(b) == 0 {
		return nil
	}
	return bytes.NewReader(bytes.Clone(b))
}

// readAll appends everything r yields to out.
func readAll(out []byte, r io.Reader) ([]byte, error) {
	for {
		if cap(out)-len(out) < 4096 {
			out = slices.Grow(out, max(cap(out), 16<<10))
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

var (
	errDenied           = errors.New("denied")
	errTooManyRedirects = errors.New("too many redirects")
)

func (p *Provider) checkRedirect(req *http.Request, via []*http.Request) error {
	if p.cfg.MaxRedirects < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > p.cfg.MaxRedirects {
		return fmt.Errorf("%w: stopped after %d", errTooManyRedirects, p.cfg.MaxRedirects)
	}
	policy, _ := req.Context().Value(policyKey{}).(ring.FetchPolicy)
	return allowedURL(req.URL, policy)
}

// allowedURL checks the scheme and the function's allow-list.
func allowedURL(u *url.URL, policy ring.FetchPolicy) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: url %q: only http and https urls can be fetched", errDenied, u.Redacted())
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return fmt.Errorf("%w: url %q has no host", errDenied, u.Redacted())
	}
	if len(policy.Allow) == 0 {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	for _, pat := range policy.Allow {
		if matchHost(pat, host, port) {
			return nil
		}
	}
	return fmt.Errorf("%w: host %q is not on the function's fetch allow-list", errDenied, u.Host)
}

// matchHost reports whether host:port matches an allow-list pattern (see ring.FetchPolicy):
// "example.com" matches that host on any port, "*.example.com" its subdomains, ":PORT" narrows
// either to one port.
func matchHost(pat, host, port string) bool {
	if i := strings.LastIndexByte(pat, ':'); i >= 0 && !strings.Contains(pat[i:], "]") {
		if pat[i+1:] != port {
			return false
		}
		pat = pat[:i]
	}
	pat = strings.TrimSuffix(strings.TrimPrefix(pat, "["), "]")
	if rest, ok := strings.CutPrefix(pat, "*."); ok {
		return strings.HasSuffix(host, "."+rest)
	}
	return host == pat
}

// control refuses a connection to an address the operator has not allowed. It runs after DNS
// resolution, for every address dialed.
func (p *Provider) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialed address %q: %v", errDenied, address, err)
	}
	if class := classify(ap.Addr()); class != "" && !p.allowed(class) {
		return fmt.Errorf("%w: %s address %s is not allowed", errDenied, class, ap.Addr())
	}
	return nil
}

// Address classes of classify.
const (
	classLoopback  = "loopback"
	classPrivate   = "private"
	classLinkLocal = "link-local"
	classReserved  = "reserved" // never allowed
)

func (p *Provider) allowed(class string) bool {
	switch class {
	case classLoopback:
		return p.cfg.AllowLoopback
	case classPrivate:
		return p.cfg.AllowPrivate
	case classLinkLocal:
		return p.cfg.AllowLinkLocal
	}
	return false
}

var (
	cgnat = netip.MustParsePrefix("100.64.0.0/10")
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	this  = netip.MustParsePrefix("0.0.0.0/8")
)

// classify returns the class of a non-public address, or "" for a public one.
func classify(a netip.Addr) string {
	a = a.Unmap()
	if nat64.Contains(a) { // an IPv4 address behind a NAT64 gateway
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	switch {
	case !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || this.Contains(a) ||
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return classReserved
	case a.IsLoopback():
		return classLoopback
	case a.IsLinkLocalUnicast():
		return classLinkLocal
	case a.IsPrivate() || cgnat.Contains(a):
		return classPrivate
	}
	return ""
}

// validToken reports whether s is an HTTP token (RFC 9110 5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeader refuses header names that are not tokens and values with CR, LF or NUL.
func validHeader(name, value string) bool {
	return validToken(name) && !strings.ContainsAny(value, "\r\n\x00")
}
