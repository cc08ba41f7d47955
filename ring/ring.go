// Package ring is BytedRing, the hostcall framework between Wisp guests and the host's services:
// the wazero host module "wisp" (submit, poll, wait, read), the lock-free rings that carry
// submissions to providers and completions back to instances, and the Provider interface that
// the log, kv, fetch and rpc providers (ring/provider/...) implement.
//
// A guest submits events to providers without blocking, as many as its limits allow, then waits:
// one wake-up returns one completion and says how many more are ready, which the guest collects
// with poll. docs/hostcalls.md is the guest's side of the contract.
//
// Lifecycle, for the pool: one Host per node (New, Close); Host.Instantiate once per wazero
// runtime; one Function per deployed function version (NewFunction); one Instance per wasm
// instance (Function.NewInstance, Instance.Close when the wasm instance is discarded); per request
// Instance.Begin before calling into the guest and Instance.End after.
package ring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wispfn/wisp/ring/internal/queue"
)

// ModuleName is the import module of the hostcalls.
const ModuleName = "wisp"

// IDs of the built-in providers, as guests name them in submit and read.
const (
	ProviderLog   uint32 = 1
	ProviderKV    uint32 = 2
	ProviderFetch uint32 = 3
	ProviderRPC   uint32 = 4
)

// MaxProviderID is the largest provider id a Host accepts.
const MaxProviderID = 63

// Limits bound what one request of a function may ask of the ring. The zero value of each field
// means its default.
type Limits struct {
	// MaxHostcalls caps the submissions of one request. Default 1000.
	MaxHostcalls int
	// MaxInFlight caps the events of one instance that are submitted and not yet read.
	// Default 64.
	MaxInFlight int
	// MaxDetached caps the detached events (event id 0, no completion: log lines) of one
	// instance that a provider has not finished yet. Default 256.
	MaxDetached int
	// MaxPayload caps one submission's payload in bytes; a provider may set a lower cap.
	// Default 1 MiB.
	MaxPayload int
}

// Defaults of Limits.
const (
	DefaultMaxHostcalls = 1000
	DefaultMaxInFlight  = 64
	DefaultMaxDetached  = 256
	DefaultMaxPayload   = 1 << 20
)

// WithDefaults returns l with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxHostcalls == 0 {
		l.MaxHostcalls = DefaultMaxHostcalls
	}
	if l.MaxInFlight == 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
	if l.MaxDetached == 0 {
		l.MaxDetached = DefaultMaxDetached
	}
	if l.MaxPayload == 0 {
		l.MaxPayload = DefaultMaxPayload
	}
	return l
}

// Validate reports the first limit out of range.
func (l Limits) Validate() error {
	switch {
	case l.MaxHostcalls < 0:
		return fmt.Errorf("hostcall limit %d is negative", l.MaxHostcalls)
	case l.MaxInFlight < 0 || l.MaxInFlight > 1<<16:
		return fmt.Errorf("in-flight limit %d is outside 0..65536", l.MaxInFlight)
	case l.MaxDetached < 0:
		return fmt.Errorf("detached limit %d is negative", l.MaxDetached)
	case l.MaxPayload < 0 || l.MaxPayload > 1<<30:
		return fmt.Errorf("payload limit %d is outside 0..1 GiB", l.MaxPayload)
	}
	return nil
}

// Config configures a Host. The zero value is a host without providers (every submit is refused
// with CodeUnknownProvider).
type Config struct {
	// Providers serve the hostcalls; their ids must be distinct, 1..MaxProviderID.
	Providers []Provider
	// Logger receives provider failures (with their error id) and lifecycle errors.
	// Default slog.Default().
	Logger *slog.Logger
	// Limits are the defaults of every function; a FunctionConfig may override them.
	Limits Limits
}

// Host owns the providers and their dispatcher goroutines. Its methods are safe for concurrent
// use. Close it after the pool has stopped calling guests.
type Host struct {
	log       *slog.Logger
	limits    Limits
	providers [MaxProviderID + 1]*dispatcher
	order     []*dispatcher // in Config order; cleaned up in reverse
	closing   atomic.Bool
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New provisions, validates and starts the providers in order. If one fails, those already
// provisioned are cleaned up and the error names the provider.
func New(cfg Config) (*Host, error) {
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("cannot start the hostcall ring: %w", err)
	}
	h := &Host{log: cfg.Logger, limits: cfg.Limits.WithDefaults()}
	if h.log == nil {
		h.log = slog.Default()
	}
	for _, p := range cfg.Providers {
		d, err := h.add(p)
		if err != nil {
			h.cleanup()
			return nil, err
		}
		h.order = append(h.order, d)
	}
	for _, d := range h.order {
		for range d.info.Workers {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				d.run()
			}()
		}
	}
	return h, nil
}

func (h *Host) add(p Provider) (*dispatcher, error) {
	info := p.Info().withDefaults(h.limits)
	if info.ID == 0 || info.ID > MaxProviderID {
		return nil, fmt.Errorf("cannot add provider %q: id %d is outside 1..%d", info.Name, info.ID, MaxProviderID)
	}
	if prev := h.providers[info.ID]; prev != nil {
		return nil, fmt.Errorf("cannot add provider %q: id %d is taken by %q", info.Name, info.ID, prev.info.Name)
	}
	if pr, ok := p.(Provisioner); ok {
		if err := pr.Provision(Env{Logger: h.log.With("provider", info.Name)}); err != nil {
			return nil, fmt.Errorf("cannot provision provider %q: %w", info.Name, err)
		}
	}
	if v, ok := p.(Validator); ok {
		if err := v.Validate(); err != nil {
			if c, ok := p.(CleanerUpper); ok {
				_ = c.Cleanup()
			}
			return nil, fmt.Errorf("invalid provider %q: %w", info.Name, err)
		}
	}
	d := newDispatcher(p, info)
	h.providers[info.ID] = d
	return d, nil
}

// Close refuses new submissions (CodeClosed), lets the dispatchers serve what is queued, cleans
// the providers up in reverse order (which waits for their in-flight work), and fails anything
// still queued with CodeClosed. It returns the first cleanup error.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.closing.Store(true)
		for _, d := range h.order {
			close(d.stop)
		}
		h.wg.Wait()
		h.closeErr = h.cleanup()
		// A submission that raced with closing may have landed after its dispatcher exited.
		for _, d := range h.order {
			for {
				c, ok := d.q.Pop()
				if !ok {
					break
				}
				c.Fail(CodeClosed, errClosed)
			}
		}
	})
	return h.closeErr
}

var errClosed = errors.New("the host is shutting down")

func (h *Host) cleanup() error {
	var first error
	for i := len(h.order) - 1; i >= 0; i-- {
		d := h.order[i]
		if c, ok := d.p.(CleanerUpper); ok {
			if err := c.Cleanup(); err != nil {
				h.log.Error("cannot clean up provider", "provider", d.info.Name, "error", err)
				if first == nil {
					first = fmt.Errorf("cannot clean up provider %q: %w", d.info.Name, err)
				}
			}
		}
	}
	return first
}

// FunctionConfig describes a deployed function to the ring.
type FunctionConfig struct {
	// Name is the function's name, used in logs, the log stream and rpc.
	Name string
	// Namespace is the function's KV namespace: the function names keys, never namespaces, so
	// it reaches only this one. Default: Name. Functions of a tenant may share one.
	Namespace string
	// Fetch is the function's outbound HTTP policy.
	Fetch FetchPolicy
	// Limits override the host's defaults field by field.
	Limits Limits
}

// FetchPolicy says where a function may send HTTP requests. Address ranges (loopback, private,
// link-local) are the operator's setting on the fetch provider, not the function's.
type FetchPolicy struct {
	// Allow lists the hosts the function may fetch from: "api.example.com" (that host),
	// "*.example.com" (its subdomains, not itself), optionally with ":port". Empty: any host.
	Allow []string
}

// Function is the ring's view of one deployed function version, shared by its instances.
// It is immutable.
type Function struct {
	host      *Host
	name      string
	namespace string
	fetch     FetchPolicy
	limits    Limits
}

// NewFunction validates cfg and returns the function's ring state.
func (h *Host) NewFunction(cfg FunctionConfig) (*Function, error) {
	if cfg.Name == "" {
		return nil, errors.New("cannot add a function to the ring: no name")
	}
	ns := cfg.Namespace
	if ns == "" {
		ns = cfg.Name
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("cannot add function %q to the ring: %w", cfg.Name, err)
	}
	for _, pat := range cfg.Fetch.Allow {
		if err := ValidHostPattern(pat); err != nil {
			return nil, fmt.Errorf("cannot add function %q to the ring: fetch allow-list: %w", cfg.Name, err)
		}
	}
	lim := cfg.Limits
	def := h.limits
	if lim.MaxHostcalls == 0 {
		lim.MaxHostcalls = def.MaxHostcalls
	}
	if lim.MaxInFlight == 0 {
		lim.MaxInFlight = def.MaxInFlight
	}
	if lim.MaxDetached == 0 {
		lim.MaxDetached = def.MaxDetached
	}
	if lim.MaxPayload == 0 {
		lim.MaxPayload = def.MaxPayload
	}
	allow := append([]string(nil), cfg.Fetch.Allow...)
	return &Function{host: h, name: cfg.Name, namespace: ns, fetch: FetchPolicy{Allow: allow}, limits: lim}, nil
}

// Name returns the function's name.
func (f *Function) Name() string { return f.name }

// Namespace returns the function's KV namespace.
func (f *Function) Namespace() string { return f.namespace }

// Fetch returns the function's outbound HTTP policy. Callers must not modify it.
func (f *Function) Fetch() FetchPolicy { return f.fetch }

// Limits returns the function's limits with defaults applied.
func (f *Function) Limits() Limits { return f.limits }

// ValidHostPattern reports whether pat is a well-formed entry of FetchPolicy.Allow.
func ValidHostPattern(pat string) error {
	host := strings.TrimPrefix(pat, "*.")
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		port := host[i+1:]
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return fmt.Errorf("host pattern %q has a bad port", pat)
		}
		host = host[:i]
	}
	if host == "" || strings.ContainsAny(host, "*/@?# ") || host != strings.ToLower(host) {
		return fmt.Errorf("host pattern %q is not HOST, *.DOMAIN or either with :PORT, in lower case", pat)
	}
	return nil
}

// dispatcher owns one provider's submission ring and the goroutines that drain it.
type dispatcher struct {
	p     Provider
	info  ProviderInfo
	q     *queue.Queue[*Call]
	idle  atomic.Int32  // workers parked on bell
	bell  chan struct{} // one token wakes one parked worker
	stop  chan struct{}
	stats *providerStats
}

func newDispatcher(p Provider, info ProviderInfo) *dispatcher {
	return &dispatcher{
		p:     p,
		info:  info,
		q:     queue.New[*Call](info.QueueSize),
		bell:  make(chan struct{}, info.Workers),
		stop:  make(chan struct{}),
		stats: newProviderStats(info.Name),
	}
}

// push queues c for the provider and wakes a parked worker. It reports false if the ring is full.
func (d *dispatcher) push(c *Call) bool {
	if !d.q.Push(c) {
		return false
	}
	if d.idle.Load() > 0 {
		select {
		case d.bell <- struct{}{}:
		default: // every parked worker has a token already
		}
	}
	return true
}

// run drains the submission ring in batches until stop is closed and the ring is empty.
func (d *dispatcher) run() {
	batch := make([]*Call, d.info.BatchSize)
	for {
		if n := d.q.PopBatch(batch); n > 0 {
			d.serve(batch[:n])
			continue
		}
		// Announce the park before the last look, so that a push either sees us idle and rings,
		// or is seen by that look.
		d.idle.Add(1)
		if n := d.q.PopBatch(batch); n > 0 {
			d.idle.Add(-1)
			d.serve(batch[:n])
			continue
		}
		select {
		case <-d.bell:
			d.idle.Add(-1)
		case <-d.stop:
			d.idle.Add(-1)
			for n := d.q.PopBatch(batch); n > 0; n = d.q.PopBatch(batch) {
				d.serve(batch[:n])
			}
			return
		}
	}
}

func (d *dispatcher) serve(batch []*Call) {
	d.stats.batchSize.Update(float64(len(batch)))
	d.stats.calls.Add(len(batch))
	d.p.Serve(batch)
	clear(batch)
}

// String makes a Function print as its name in logs.
func (f *Function) String() string { return f.name }

// instanceKey is the context key under which a requestContext finds its Instance.
type instanceKey struct{}

// requestContext is the context an Instance hands out for one request: the request's context
// plus the instance and the request's generation.
type requestContext struct {
	context.Context
	in  *Instance
	gen uint32
}

// Value implements context.Context.
func (r *requestContext) Value(key any) any {
	if key == (instanceKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// instanceFrom returns the instance serving the request of ctx, or nil if ctx is no request's
// (guest initialization, a warm-up without hostcalls) or a request that has ended.
func instanceFrom(ctx context.Context) *Instance {
	r, ok := ctx.(*requestContext)
	if !ok {
		if r, ok = ctx.Value(instanceKey{}).(*requestContext); !ok {
			return nil
		}
	}
	if !r.in.active || r.gen != r.in.gen {
		return nil
	}
	return r.in
}
