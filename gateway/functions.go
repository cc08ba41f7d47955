package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/pool"
	"github.com/wispfn/wisp/pool/abi"
	ringrpc "github.com/wispfn/wisp/ring/provider/rpc"
)

// catalog is the gateway's in-memory view of the deployed functions: metadata from the
// registry, compiled versions in the pool, and the routing table built from both.
// Reads (the request path) take the table from an atomic pointer; changes are serialized.
type catalog struct {
	reg   *registry.Registry
	rt    *pool.Runtime
	stats statsByName
	// runsHere reports whether this node's runtime runs a function; the others are routed
	// (to a node of their pool) but not compiled here.
	runsHere func(registry.Function) bool

	tbl atomic.Pointer[table]
	mu  sync.Mutex // serializes deploy, remove and load
}

func newCatalog(reg *registry.Registry, rt *pool.Runtime) *catalog {
	c := &catalog{reg: reg, rt: rt, runsHere: func(registry.Function) bool { return true }}
	c.tbl.Store(newTable())
	return c
}

func (c *catalog) table() *table { return c.tbl.Load() }

// deployRequest is what an admin deploy carries besides the code.
type deployRequest struct {
	Name        string
	Route       string
	Host        string
	Limits      registry.Limits
	Env         map[string]string
	WarmUp      bool
	FetchAllow  []string
	KVNamespace string
	Tenant      string
	// TTL, when positive, makes the function temporary: it is deleted TTL after this deploy.
	TTL time.Duration
	// PlaygroundKey is the hash of the playground key of a playground function (registry.Function).
	PlaygroundKey string
	Wasm          []byte
}

// deploy compiles the module, stores code and metadata durably, then routes traffic to the new
// version. Nothing already deployed changes unless every step succeeds.
func (c *catalog) deploy(ctx context.Context, d deployRequest) (registry.Function, error) {
	if err := registry.ValidName(d.Name); err != nil {
		return registry.Function{}, errorf(http.StatusBadRequest, "%v", err)
	}
	if d.Route == "" {
		d.Route = "/" + d.Name
	}
	if err := checkRoute(d.Route); err != nil {
		return registry.Function{}, errorf(http.StatusBadRequest, "%v", err)
	}
	if err := checkHost(d.Host); err != nil {
		return registry.Function{}, errorf(http.StatusBadRequest, "%v", err)
	}
	if d.Name == "metrics" {
		return registry.Function{}, errorf(http.StatusBadRequest, "name %q is reserved by Wisp", d.Name)
	}
	if err := checkWasmHeader(d.Wasm); err != nil {
		return registry.Function{}, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.table().conflict(d.Name, d.Route, d.Host); err != nil {
		return registry.Function{}, errorf(http.StatusConflict, "%v", err)
	}
	fn, err := c.rt.Compile(ctx, pool.Spec{Name: d.Name, Wasm: d.Wasm, Env: d.Env, Limits: poolLimits(d.Limits), WarmUp: d.WarmUp, FetchAllow: d.FetchAllow, KVNamespace: d.KVNamespace})
	if err != nil {
		return registry.Function{}, err
	}
	digest, err := c.reg.PutCode(ctx, d.Wasm)
	if err != nil {
		fn.Close()
		return registry.Function{}, fmt.Errorf("cannot store code of %q: %w", d.Name, err)
	}
	meta, err := c.reg.Deploy(ctx, registry.Function{
		Name: d.Name, Digest: digest, Size: int64(len(d.Wasm)),
		Route: d.Route, Host: d.Host, Limits: d.Limits, Env: d.Env, WarmUp: d.WarmUp, FetchAllow: d.FetchAllow,
		KVNamespace: d.KVNamespace, Tenant: d.Tenant, Expires: expiry(d.TTL), PlaygroundKey: d.PlaygroundKey,
	})
	if err != nil {
		fn.Close()
		return registry.Function{}, fmt.Errorf("cannot record deploy of %q: %w", d.Name, err)
	}
	c.install(meta, fn)
	return meta, nil
}

// expiry is when a function deployed now with ttl expires; zero for no TTL.
func expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return time.Now().Add(ttl).UTC().Truncate(time.Millisecond)
}

// install publishes a compiled version and retires the one it replaces. Callers hold c.mu.
func (c *catalog) install(meta registry.Function, fn *pool.Function) {
	e := &entry{meta: meta, fn: fn, stats: c.stats.get(meta.Name), prefix: meta.Route}
	if e.prefix == "" {
		e.prefix = "/" + meta.Name
	}
	old := c.table().byName[meta.Name]
	c.tbl.Store(c.table().with(meta.Name, e))
	if old != nil && old.fn != nil {
		old.fn.Close()
	}
}

// remove deletes a function from the registry, then stops routing to it.
func (c *catalog) remove(ctx context.Context, name string) error {
	if err := registry.ValidName(name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reg.Delete(ctx, name); err != nil {
		return err
	}
	c.unroute(name)
	return nil
}

// unroute stops routing to a function and retires it. Callers hold c.mu.
func (c *catalog) unroute(name string) {
	old := c.table().byName[name]
	c.tbl.Store(c.table().with(name, nil))
	if old != nil && old.fn != nil {
		old.fn.Close()
	}
	c.stats.forget(name)
	c.rt.Forget(name)
}

// close retires every compiled version.
func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.table().byName {
		if e.fn != nil {
			e.fn.Close()
		}
	}
	c.tbl.Store(newTable())
}

func poolLimits(l registry.Limits) pool.Limits {
	return pool.Limits{
		MemoryBytes:      uint64(l.MemoryMiB) << 20,
		Timeout:          time.Duration(l.TimeoutMs) * time.Millisecond,
		MaxRequestBytes:  int(l.MaxRequestBytes),
		MaxResponseBytes: int(l.MaxResponseBytes),
		MaxInstances:     l.MaxInstances,
	}
}

// checkWasmHeader refuses what is plainly not a wasm module before the compiler sees it,
// with a message that says what was found instead.
func checkWasmHeader(b []byte) error {
	switch {
	case len(b) == 0:
		return errorf(http.StatusBadRequest, "empty module: the request body must be a .wasm file")
	case len(b) < 8:
		return errorf(http.StatusBadRequest, "module of %d bytes is truncated: a wasm module starts with an 8-byte header", len(b))
	case string(b[:4]) != "\x00asm":
		return errorf(http.StatusBadRequest, "not a wasm module: it starts with %q, not \\0asm", b[:4])
	case b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0:
		return errorf(http.StatusBadRequest, "unsupported wasm binary version %v; want 1 (a core module, not a component)", b[4:8])
	}
	return nil
}

// Invoke runs function name for a guest's rpc hostcall (ring/provider/rpc.Invoker): in-process,
// through the same pool and limits as an HTTP request. ctx carries the call depth.
func (s *Server) Invoke(ctx context.Context, caller, name string, req *abi.Request, fn func(*abi.Response) error) error {
	e := s.cat.table().byName[name]
	if e == nil {
		return fmt.Errorf("function %q called %q: %w", caller, name, ringrpc.ErrNotFound)
	}
	if e.fn == nil {
		return errorf(http.StatusServiceUnavailable, "function %q called %q, which runs only on the nodes of its tenant's pool, not on this one", caller, name)
	}
	start := time.Now()
	err := e.fn.Invoke(ctx, req, fn)
	status := http.StatusOK
	if err != nil {
		status, _ = statusOf(err)
	}
	e.stats.observe(status, start)
	return err
}

// rollback makes an earlier version current again (version 0: the one before the current), as a
// new version that copies it, then routes traffic to it once it is compiled.
func (c *catalog) rollback(ctx context.Context, name string, version uint64) (registry.Function, error) {
	if err := registry.ValidName(name); err != nil {
		return registry.Function{}, errorf(http.StatusBadRequest, "%v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	meta, err := c.reg.Rollback(ctx, name, version)
	if err != nil {
		return registry.Function{}, err
	}
	var fn *pool.Function
	if c.runsHere(meta) {
		if fn, err = c.compileVersion(ctx, meta); err != nil {
			return registry.Function{}, err
		}
	}
	c.install(meta, fn)
	return meta, nil
}
