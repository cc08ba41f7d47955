package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/client"
	"github.com/cloudwego/hertz/pkg/protocol"

	"github.com/wispfn/wisp/kv/nodes"
	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/pool"
	"github.com/wispfn/wisp/sched"
)

// internalPrefix starts the headers gateways use between themselves; a guest never sees them.
const internalPrefix = "x-wisp-"

// forwardHeader marks a request one gateway forwarded to the node sched picked; its value is
// the admin token, so a client cannot use it to skip scheduling. Guests never see it.
const forwardHeader = "X-Wisp-Forwarded"

// clientHeader carries the client's address of a forwarded request: the guest sees it as the
// remote address, as it would on the node the client reached.
const clientHeader = "X-Wisp-Client"

var (
	forwardsOK     = metrics.NewCounter(`wisp_gateway_forwards_total{outcome="ok"}`)
	forwardsFailed = metrics.NewCounter(`wisp_gateway_forwards_total{outcome="failed"}`)
	// not_ready: the node picked had not routed the function's version yet; another was tried.
	forwardsNotReady = metrics.NewCounter(`wisp_gateway_forwards_total{outcome="not_ready"}`)
	forwardSeconds   = metrics.NewPrometheusHistogramExt(`wisp_gateway_forward_seconds`, metrics.ExponentialBuckets(50e-6, 2, 18))
)

// Cluster makes a gateway one of several nodes of a region. A request for a function this
// node runs is served in-process: no hop that does not earn its place. A function of a tenant
// isolated into another pool runs only on that pool's nodes; so do all functions when this
// node's pool is one no tenant maps to (a gateway-only node). Those requests are forwarded, over
// kept-alive connections, to the node sched's feedback-weighted round robin picks in the pool.
type Cluster struct {
	// Self is this node's URL, as it announces itself to the others (nodes.Member.URL).
	Self string
	// Pool is the pool this node's runtime serves: it compiles and runs only the functions
	// of the tenants sched puts in that pool.
	Pool string
	// Sched picks the nodes; SetMembers feeds it.
	Sched *sched.Scheduler
	// ForwardTimeout bounds a forwarded request beyond the function's own deadline. Default 5s.
	ForwardTimeout time.Duration

	client *client.Client
}

// peer is the sched.Member value of another node.
type peer struct {
	scheme, host []byte
}

// SetMembers hands the region's other nodes to the scheduler (this node, in the list too, runs
// its own pool's requests itself). Use it as the nodes.Directory.Watch callback.
func (c *Cluster) SetMembers(ms []nodes.Member) error {
	out := make([]sched.Member, 0, len(ms))
	for _, m := range ms {
		if m.URL == c.Self {
			continue
		}
		scheme, host, err := splitURL(m.URL)
		if err != nil {
			continue
		}
		out = append(out, sched.Member{ID: m.URL, Pool: m.Pool, Weight: m.Weight, Value: &peer{scheme: scheme, host: host}})
	}
	return c.Sched.SetMembers(out)
}

func splitURL(u string) (scheme, host []byte, err error) {
	var uri protocol.URI
	uri.Parse(nil, []byte(u))
	if len(uri.Host()) == 0 {
		return nil, nil, fmt.Errorf("node url %q has no host", u)
	}
	return append([]byte(nil), uri.Scheme()...), append([]byte(nil), uri.Host()...), nil
}

func (c *Cluster) init() error {
	switch {
	case c.Sched == nil:
		return errors.New("gateway: cluster without a scheduler")
	case c.Self == "":
		return errors.New("gateway: cluster without this node's URL")
	}
	if _, _, err := splitURL(c.Self); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := nodes.ValidPool(c.Pool); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = 5 * time.Second
	}
	cl, err := client.NewClient(
		client.WithDialTimeout(time.Second),
		client.WithMaxConnsPerHost(1024),
		client.WithMaxIdleConnDuration(90*time.Second),
		client.WithNoDefaultUserAgentHeader(true),
		client.WithDisablePathNormalizing(true),
	)
	if err != nil {
		return fmt.Errorf("gateway: cannot make the forwarding client: %w", err)
	}
	c.client = cl
	return c.SetMembers(nil)
}

// writeMetrics writes the scheduler's live view of every other node: the feedback that
// decides its share of its pool's requests.
func (c *Cluster) writeMetrics(w io.Writer) {
	for _, st := range c.Sched.Stats() {
		l := fmt.Sprintf(`{pool=%q,target=%q}`, st.Pool, st.ID)
		ejected := 0
		if !st.EjectedUntil.IsZero() {
			ejected = 1
		}
		fmt.Fprintf(w, "wisp_sched_target_latency_ewma_seconds%s %g\n", l, st.EWMA.Seconds())
		fmt.Fprintf(w, "wisp_sched_target_effective_weight%s %g\n", l, st.EffectiveWeight)
		fmt.Fprintf(w, "wisp_sched_target_in_flight%s %d\n", l, st.InFlight)
		fmt.Fprintf(w, "wisp_sched_target_ejected%s %d\n", l, ejected)
	}
}

// runsHere reports whether this node's runtime runs f.
func (c *Cluster) runsHere(f registry.Function) bool {
	return c.Sched.PoolOf(f.Tenant) == c.Pool
}

// forwarded reports whether another gateway sent this request here to run, with the token.
func (s *Server) forwarded(rc *app.RequestContext) bool {
	v := rc.Request.Header.Peek(forwardHeader)
	return len(v) > 0 && subtle.ConstantTimeCompare(v, s.token) == 1
}

// schedule serves a request here when this node runs its function, else forwards it to the
// node sched picks in the function's pool, and returns the status sent. A node that has not
// routed the function's version yet (it is still compiling it) sends the request back unserved,
// and the next pick gets it.
func (s *Server) schedule(ctx context.Context, rc *app.RequestContext, e *entry, rest []byte) int {
	c := s.cfg.Cluster
	if c == nil || s.forwarded(rc) {
		if c != nil && !s.readyFor(rc, e) {
			return notReady(rc, e)
		}
		return s.invoke(ctx, rc, e, rest)
	}
	if e.fn != nil {
		return s.invoke(ctx, rc, e, rest)
	}
	deadline := time.Now().Add(notReadyBudget)
	for wait := time.Duration(0); ; wait = min(max(2*wait, time.Millisecond), 50*time.Millisecond) {
		if wait > 0 { // every node asked so far is still preparing this version
			if time.Now().Add(wait).After(deadline) {
				break
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				writeError(rc, ctx.Err())
				return rc.Response.StatusCode()
			}
		}
		t, err := c.Sched.Pick(e.meta.Tenant)
		if err != nil {
			writeError(rc, errorf(http.StatusServiceUnavailable, "no node of pool %q can take a request for %q now: %v", c.Sched.PoolOf(e.meta.Tenant), e.meta.Name, err))
			return http.StatusServiceUnavailable
		}
		start := time.Now()
		out := s.forward(ctx, rc, t.Value().(*peer), time.Duration(e.meta.Limits.TimeoutMs)*time.Millisecond, e.meta.Version)
		t.Done(time.Since(start), out != forwardFailed)
		if out != forwardNotReady {
			return rc.Response.StatusCode()
		}
		forwardsNotReady.Inc()
	}
	writeError(rc, errorf(http.StatusServiceUnavailable, "version %d of %q is still being prepared on the nodes of pool %q; retry", e.meta.Version, e.meta.Name, c.Sched.PoolOf(e.meta.Tenant)))
	rc.Response.Header.Set("Retry-After", "1")
	return http.StatusServiceUnavailable
}

// notReadyBudget bounds how long a request waits for a node of its pool to be ready for its
// function's version: the node that deployed it routes it a moment after the registry reports
// it, the others once they have compiled it.
const notReadyBudget = 2 * time.Second

// versionHeader carries the version of the function a forwarded request is for.
const versionHeader = "X-Wisp-Version"

// The headers' names, for the forwarding path, which allocates them once.
var (
	forwardKey = []byte(forwardHeader)
	clientKey  = []byte(clientHeader)
	versionKey = []byte(versionHeader)
)

// notReadyHeader marks a forwarded request sent back unserved: this node has not routed that
// version of the function yet (or does not run it).
const notReadyHeader = "X-Wisp-Not-Ready"

// readyFor reports whether a request forwarded here can run here: this node routes the
// function at the version the forwarding node routes, or a later one, and runs it.
func (s *Server) readyFor(rc *app.RequestContext, e *entry) bool {
	if e == nil || e.fn == nil {
		return false
	}
	v, err := strconv.ParseUint(string(rc.Request.Header.Peek(versionHeader)), 10, 64)
	return err != nil || e.meta.Version >= v
}

// notReady sends a forwarded request back unserved.
func notReady(rc *app.RequestContext, e *entry) int {
	name := "this function"
	if e != nil {
		name = strconv.Quote(e.meta.Name)
	}
	writeError(rc, errorf(http.StatusMisdirectedRequest, "this node does not run %s at that version yet", name))
	rc.Response.Header.Set(notReadyHeader, "1") // after writeError, which resets the response
	return http.StatusMisdirectedRequest
}

type forwardOutcome uint8

const (
	forwardOK       forwardOutcome = iota // the node answered (whatever the function said)
	forwardFailed                         // no answer, or the node could not take work: counts against it
	forwardNotReady                       // the node has not routed that version yet: try another
)

// forward sends the request to p as it came (Host, path, headers, body) and, unless p sends it
// back unserved, copies the answer back. version (0: none) is the function version the request
// is for.
func (s *Server) forward(ctx context.Context, rc *app.RequestContext, p *peer, deadline time.Duration, version uint64) forwardOutcome {
	start := time.Now()
	req := protocol.AcquireRequest()
	resp := protocol.AcquireResponse()
	defer protocol.ReleaseRequest(req)
	defer protocol.ReleaseResponse(resp)
	rc.Request.CopyTo(req)
	req.Header.SetHostBytes(rc.Request.Host())
	req.URI().SetSchemeBytes(p.scheme)
	req.URI().SetHostBytes(p.host)
	var buf [64]byte
	req.Header.SetBytesKV(forwardKey, s.token)
	req.Header.SetBytesKV(clientKey, appendAddr(buf[:0], rc.RemoteAddr()))
	if version > 0 {
		req.Header.SetBytesKV(versionKey, strconv.AppendUint(buf[:0], version, 10))
	}
	if deadline <= 0 {
		deadline = pool.DefaultTimeout
	}
	err := s.cfg.Cluster.client.DoTimeout(ctx, req, resp, deadline+s.cfg.Cluster.ForwardTimeout)
	forwardSeconds.UpdateDuration(start)
	switch {
	case err != nil:
		forwardsFailed.Inc()
		s.log.Warn("cannot forward request", "node", string(p.host), "path", string(rc.Request.URI().PathOriginal()), "error", err)
		writeError(rc, errorf(http.StatusBadGateway, "node %s did not answer: %v", p.host, err))
		return forwardFailed
	case resp.StatusCode() == http.StatusMisdirectedRequest && len(resp.Header.Peek(notReadyHeader)) > 0:
		return forwardNotReady
	}
	forwardsOK.Inc()
	resp.CopyTo(&rc.Response)
	if resp.StatusCode() == http.StatusServiceUnavailable {
		return forwardFailed
	}
	return forwardOK
}

// forwardDeploy sends a deploy of a function this node does not run to a node of its pool,
// which compiles and pre-initializes it (a tenant's code runs only on its pool's nodes); this
// node routes it when the registry reports it. It reports whether it handled the request.
func (s *Server) forwardDeploy(ctx context.Context, rc *app.RequestContext, d deployRequest) bool {
	c := s.cfg.Cluster
	if c == nil || c.runsHere(registry.Function{Tenant: d.Tenant}) {
		return false
	}
	if s.forwarded(rc) { // the nodes disagree on the pools: never compile another pool's code
		s.requestError(rc, errorf(http.StatusMisdirectedRequest, "cannot deploy %q here: this node is in pool %q, tenant %q runs in pool %q; give every node the same --isolate list", d.Name, c.Pool, d.Tenant, c.Sched.PoolOf(d.Tenant)))
		return true
	}
	t, err := c.Sched.Pick(d.Tenant)
	if err != nil {
		s.requestError(rc, errorf(http.StatusServiceUnavailable, "cannot deploy %q: no node of pool %q can take it now: %v", d.Name, c.Sched.PoolOf(d.Tenant), err))
		return true
	}
	p := t.Value().(*peer)
	out := s.forward(ctx, rc, p, time.Minute, 0)
	t.Release(out != forwardFailed) // a deploy's time says nothing of the node's speed
	s.log.Info("deploy forwarded to its pool", "function", d.Name, "tenant", d.Tenant, "node", string(p.host), "status", rc.Response.StatusCode())
	return true
}
