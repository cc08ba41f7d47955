package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/pool/cowmem"
	"github.com/wispfn/wisp/pool/profile"
	"github.com/wispfn/wisp/pool/snapshot"
	"github.com/wispfn/wisp/ring"
)

// Spec describes one version of a function to compile.
type Spec struct {
	// Name identifies the function in logs and metrics.
	Name string
	// Wasm is the module: a WASI preview 1 reactor exporting the guest ABI (docs/abi.md).
	Wasm []byte
	// Env is the guest's environment.
	Env map[string]string
	// Limits bound the function; zero fields take their defaults.
	Limits Limits
	// WarmUp runs one synthetic GET / before the snapshot is taken, so lazy first-call work is
	// in the image and each instance's first request is as fast as its later ones. The guest's
	// state after that request is what every instance starts from.
	WarmUp bool
	// FetchAllow lists the hosts the function may fetch from ("api.example.com",
	// "*.example.com", with an optional ":port"). Empty: any public host.
	FetchAllow []string
	// KVNamespace is the Global KV namespace the function's kv hostcalls reach. Empty: one of
	// its own, named after it. Functions of one tenant may share a namespace.
	KVNamespace string
}

// Function is one compiled version of a function with its pool of live instances. Invoke is
// safe for concurrent use; each instance serves one request at a time. Close it when the
// version is replaced or removed: in-flight requests finish, then their instances are closed.
type Function struct {
	rt     *Runtime
	name   string
	limits Limits
	code   *code
	modCfg wazero.ModuleConfig
	alloc  experimental.MemoryAllocator
	staged *cowmem.Staged // the staging allocator among alloc, closed with the function; nil if none
	stats  *fnStats
	logw   *lineLogger
	ringFn *ring.Function // nil when the module makes no hostcalls

	idle   chan *instance // idle instances, at most limits.MaxInstances
	freed  chan struct{}  // a slot freed by a discarded instance; wakes one waiter
	live   atomic.Int32   // idle + busy instances
	closed atomic.Bool

	// A profile in progress (profile.go): requests run on instances of its own, made from the
	// listener-enabled module. nil when none runs: execute loads it once per request.
	prof     atomic.Pointer[profiling]
	profMu   sync.Mutex   // held by the profile in progress
	profLive atomic.Int32 // live instances of profiles

	closeOnce  sync.Once
	finishOnce sync.Once
}

// ABI exports, see docs/abi.md.
const (
	exportMemory     = "memory"
	exportInitialize = "_initialize"
	exportStart      = "wisp_start"
	exportAlloc      = "wisp_alloc"
	exportHandle     = "wisp_handle"
)

// Compile prepares spec for serving: it pre-initializes the module (a snapshot of its memory and
// globals after _initialize and wisp_start, taken once and kept under Config.SnapshotDir),
// compiles the module instances are created from, and instantiates it once to prove that it
// runs. No instance is kept: the first request creates one. Errors that are the module's fault
// wrap ErrInvalidModule.
func (r *Runtime) Compile(ctx context.Context, spec Spec) (*Function, error) {
	if err := spec.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("cannot compile %q: %w: %w", spec.Name, ErrInvalidModule, err)
	}
	lim := spec.Limits.WithDefaults()
	if err := checkHeader(spec.Wasm); err != nil {
		return nil, fmt.Errorf("cannot compile %q: %w: %w", spec.Name, ErrInvalidModule, err)
	}
	start := time.Now()
	stats := r.stats.get(spec.Name)
	logw := newLineLogger(r.log, r.output, spec.Name)
	env := envList(spec.Env)
	key := codeKey(spec.Wasm, env, spec.WarmUp)
	c, stored := r.shareCode(key), false
	if c == nil {
		var err error
		if c, stored, err = r.prepare(ctx, spec, key, env, lim, logw); err != nil {
			return nil, fmt.Errorf("cannot pre-initialize %q: %w: %w", spec.Name, ErrInvalidModule, err)
		}
		compiled, err := c.wz.CompileModule(compileContext(ctx), c.served)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("cannot compile %q (%d bytes): %w: %w", spec.Name, len(spec.Wasm), ErrInvalidModule, err)
		}
		c.compiled, c.lastUse = compiled, time.Now()
		c = r.registerCode(c)
	}
	// From here on c is this function's: every failure drops it (it stays with the other
	// functions that share it).
	compiled, _, err := r.useCode(ctx, c)
	if err != nil {
		r.dropCode(c)
		return nil, fmt.Errorf("cannot compile %q (%d bytes): %w: %w", spec.Name, len(spec.Wasm), ErrInvalidModule, err)
	}
	alloc, staged := c.allocator(lim, r.stage)
	fail := func(format string, err error) (*Function, error) {
		if staged != nil {
			staged.Close()
		}
		r.releaseCode(c)
		r.dropCode(c)
		return nil, fmt.Errorf(format, spec.Name, ErrInvalidModule, err)
	}
	if err := checkExports(compiled, lim); err != nil {
		return fail("cannot compile %q: %w: %w", err)
	}
	stats.compileSeconds.UpdateDuration(start)
	var ringFn *ring.Function
	if importsRing(compiled) {
		if r.ring == nil {
			return fail("cannot compile %q: %w: %w", fmt.Errorf("it imports the %q host module, which this node does not serve", ring.ModuleName))
		}
		if ringFn, err = r.ring.NewFunction(ring.FunctionConfig{Name: spec.Name, Namespace: spec.KVNamespace, Fetch: ring.FetchPolicy{Allow: spec.FetchAllow}}); err != nil {
			return fail("cannot compile %q: %w: %w", err)
		}
	}

	f := &Function{
		rt:     r,
		name:   spec.Name,
		limits: lim,
		code:   c,
		alloc:  alloc,
		staged: staged,
		stats:  stats,
		logw:   logw,
		ringFn: ringFn,
		idle:   make(chan *instance, lim.MaxInstances),
		freed:  make(chan struct{}, lim.MaxInstances),
	}
	f.modCfg, err = moduleConfig(c, env, logw)
	if err != nil {
		return fail("cannot compile %q: %w: %w", err)
	}
	ictx, cancel := context.WithTimeout(ctx, lim.Timeout)
	in, err := f.instantiate(ictx)
	cancel()
	if err != nil {
		return fail("cannot initialize %q: %w: %w", err)
	}
	r.releaseCode(c) // the trial instance holds it now
	// The trial instance proved the code runs; it is not kept, so a deployed function that is
	// never called holds no instance, and its first request is a true cold start.
	f.live.Store(1)
	f.stats.liveInstances.Add(1)
	f.discard(in)
	r.track(f)
	r.log.Debug("function compiled", "function", spec.Name, "preinitialized", c.image != nil, "stored_snapshot", stored, "took", time.Since(start))
	return f, nil
}

// checkHeader refuses what is plainly not a wasm module before any parser sees it.
func checkHeader(b []byte) error {
	switch {
	case len(b) < 8:
		return fmt.Errorf("module of %d bytes is truncated: a wasm module starts with an 8-byte header", len(b))
	case string(b[:4]) != "\x00asm":
		return fmt.Errorf("not a wasm module: it starts with %q", b[:4])
	}
	return nil
}

func moduleConfig(c *code, env []string, logw *lineLogger) (wazero.ModuleConfig, error) {
	var cfg wazero.ModuleConfig
	if c.image != nil {
		s := snapshot.Snapshot{Clock: c.clock}
		var err error
		if cfg, err = s.ModuleConfig(c.base, env); err != nil {
			return nil, err
		}
	} else {
		cfg = wazero.NewModuleConfig().
			WithStartFunctions(). // _initialize and wisp_start are called explicitly, to report errors
			WithSysWalltime().
			WithSysNanotime().
			WithSysNanosleep().
			WithRandSource(randSource)
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			cfg = cfg.WithEnv(k, v)
		}
	}
	return cfg.
		WithName(""). // instances of one module are anonymous, so many can live at once
		WithStdout(logw.stream("stdout")).
		WithStderr(logw.stream("stderr")), nil
}

func checkExports(m wazero.CompiledModule, lim Limits) error {
	mem, ok := m.ExportedMemories()[exportMemory]
	if !ok {
		return fmt.Errorf("module exports no %q", exportMemory)
	}
	if need := uint64(mem.Min()) * wasmPage; need > lim.MemoryBytes {
		return fmt.Errorf("module needs %d bytes of memory at start; the function's memory limit is %d", need, lim.MemoryBytes)
	}
	fns := m.ExportedFunctions()
	want := []struct {
		name     string
		params   []api.ValueType
		results  []api.ValueType
		required bool
	}{
		{exportAlloc, []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}, true},
		{exportHandle, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}, true},
		{exportInitialize, nil, nil, false},
		{exportStart, nil, nil, false},
	}
	for _, w := range want {
		def, ok := fns[w.name]
		if !ok {
			if w.required {
				return fmt.Errorf("module exports no %q function (is it built with the Wisp SDK as a reactor?)", w.name)
			}
			continue
		}
		if !sameTypes(def.ParamTypes(), w.params) || !sameTypes(def.ResultTypes(), w.results) {
			return fmt.Errorf("export %q has signature %v -> %v; want %v -> %v",
				w.name, typeNames(def.ParamTypes()), typeNames(def.ResultTypes()), typeNames(w.params), typeNames(w.results))
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func typeNames(ts []api.ValueType) []string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = api.ValueTypeName(t)
	}
	return s
}

// Name returns the function's name.
func (f *Function) Name() string { return f.name }

// Limits returns the function's limits with defaults applied.
func (f *Function) Limits() Limits { return f.limits }

// Live returns the number of live instances (idle and busy).
func (f *Function) Live() int { return int(f.live.Load()) }

// Close stops admitting requests and closes idle instances; busy ones are closed when their
// request ends. The compiled code is released once the last instance is gone.
func (f *Function) Close() {
	f.closeOnce.Do(func() {
		f.closed.Store(true)
		f.drainIdle()
		f.endProfiling()
		f.finishIfDone()
	})
}

// finishIfDone retires the code of a closed function once no instance of it is left.
func (f *Function) finishIfDone() {
	if f.closed.Load() && f.live.Load() == 0 {
		f.finishOnce.Do(func() {
			f.rt.untrack(f)
			if f.staged != nil {
				f.staged.Close()
			}
			f.rt.dropCode(f.code)
		})
	}
}

// drainIdle closes every idle instance. Instances returned later are closed by release.
func (f *Function) drainIdle() {
	for {
		select {
		case in := <-f.idle:
			f.discard(in)
		default:
			return
		}
	}
}

// instance is one live instantiation of a function, used by one request at a time.
type instance struct {
	mod      api.Module
	mem      api.Memory
	alloc    api.Function // nil until the first request that needs a new buffer
	handle   api.Function
	stack    [2]uint64 // CallWithStack scratch: params in, results out
	bufPtr   uint32    // request buffer from wisp_alloc
	bufCap   uint32
	lastUsed int64 // nanotime of the last release, for reaping idle instances

	// Interruptible code: the guest's flag, the running call's deadline (nanotime; 0 when no
	// call runs), and whether the sweeper fired it.
	intr        api.MutableGlobal
	deadline    atomic.Int64
	interrupted atomic.Bool

	ring *ring.Instance // hostcall state; nil when the module makes no hostcalls

	// prof is the profile this instance was made for, from the listener-enabled module, and
	// sampler samples its calls; both nil for ordinary instances.
	prof    *profiling
	sampler *profile.Sampler
}

// instantiate creates an instance from f's code, reloading the compiled code first if it was
// evicted (the disk tier). Pre-initialized code runs no guest code here.
func (f *Function) instantiate(ctx context.Context) (*instance, error) {
	in, _, err := f.instantiateTier(ctx)
	return in, err
}

func (f *Function) instantiateTier(ctx context.Context) (*instance, tier, error) {
	compiled, t, err := f.rt.useCode(ctx, f.code)
	if err != nil {
		return nil, t, err
	}
	in, err := f.newInstance(ctx, compiled)
	return in, t, err
}

// newInstance instantiates compiled, f's code or its listener-enabled copy, with f's memory
// allocator and module configuration. The caller holds a use of f.code for the instance
// (useCode); newInstance releases it if it fails.
func (f *Function) newInstance(ctx context.Context, compiled wazero.CompiledModule) (*instance, error) {
	ictx := experimental.WithMemoryAllocator(ctx, f.alloc)
	mod, err := f.code.wz.InstantiateModule(ictx, compiled, f.modCfg)
	if err != nil {
		f.rt.releaseCode(f.code)
		return nil, err
	}
	in := &instance{
		mod:    mod,
		mem:    mod.ExportedMemory(exportMemory),
		handle: mod.ExportedFunction(exportHandle),
		bufPtr: f.code.reqBuf,
		bufCap: f.code.reqBufSize,
	}
	if f.ringFn != nil {
		in.ring = f.ringFn.NewInstance()
	}
	if f.code.interruptible {
		if in.intr = interruptFlag(mod); in.intr == nil {
			_ = mod.Close(ctx)
			f.rt.releaseCode(f.code)
			return nil, fmt.Errorf("instrumented module lacks its %s export", snapshot.ExportInterrupt)
		}
		f.rt.running.add(in)
	}
	if f.code.image == nil {
		for _, name := range []string{exportInitialize, exportStart} {
			if fn := mod.ExportedFunction(name); fn != nil {
				f.startDeadline(in)
				_, err := fn.Call(ctx)
				if in.intr != nil {
					in.deadline.Swap(0)
				}
				if err != nil || in.interrupted.Load() {
					f.rt.running.remove(in)
					_ = mod.Close(ctx)
					f.rt.releaseCode(f.code)
					if in.interrupted.Load() {
						err = fmt.Errorf("deadline of %v exceeded", f.limits.Timeout)
					}
					return nil, fmt.Errorf("%s: %w", name, err)
				}
			}
		}
	}
	return in, nil
}

// startDeadline arms the interrupt of an instance's next call.
func (f *Function) startDeadline(in *instance) {
	if in.intr != nil {
		in.deadline.Store(nanotime() + int64(f.limits.Timeout))
	}
}

// acquire returns an idle instance, instantiates a new one if the function is below its
// instance limit, or waits for one until ctx is done.
func (f *Function) acquire(ctx context.Context) (*instance, error) {
	var wait *time.Timer
	for {
		select {
		case in := <-f.idle:
			f.stats.hotStarts.Inc()
			return in, nil
		default:
		}
		if f.closed.Load() {
			return nil, ErrClosed
		}
		if n := f.live.Add(1); n <= int32(f.limits.MaxInstances) {
			start := time.Now()
			in, t, err := f.instantiateTier(ctx)
			if err != nil {
				f.live.Add(-1)
				f.signalFreed()
				return nil, err
			}
			if t == tierDisk {
				f.stats.diskStarts.Inc()
			} else {
				f.stats.coldStarts.Inc()
			}
			f.stats.liveInstances.Add(1)
			f.stats.instantiateSeconds.UpdateDuration(start)
			return in, nil
		}
		f.live.Add(-1)
		f.stats.waits.Inc()
		if wait == nil {
			// The wait for an instance counts against the request's deadline.
			wait = time.NewTimer(f.limits.Timeout)
			defer wait.Stop()
		}
		select {
		case in := <-f.idle:
			f.stats.hotStarts.Inc()
			return in, nil
		case <-f.freed:
			// A slot freed up; go round and take it.
		case <-wait.C:
			return nil, fmt.Errorf("function %q: %w (%d instances, limit %d; raise the function's max_instances): %w",
				f.name, ErrBusy, f.live.Load(), f.limits.MaxInstances, context.DeadlineExceeded)
		case <-ctx.Done():
			return nil, fmt.Errorf("function %q: %w (%d instances, limit %d; raise the function's max_instances): %w",
				f.name, ErrBusy, f.live.Load(), f.limits.MaxInstances, ctx.Err())
		}
	}
}

// release returns a healthy instance to the idle pool (its profile's, for a profile's).
func (f *Function) release(in *instance) {
	in.lastUsed = nanotime()
	if in.prof != nil {
		f.releaseProfiling(in)
		return
	}
	f.putIdle(in)
}

func (f *Function) putIdle(in *instance) {
	if f.closed.Load() {
		f.discard(in)
		return
	}
	f.idle <- in // never blocks: at most MaxInstances live instances exist
	if f.closed.Load() {
		f.drainIdle() // Close raced with the send
	}
}

// discard closes an instance off the request path and frees its slot. When the function is
// closed and this was its last instance, its code is released too.
func (f *Function) discard(in *instance) {
	f.live.Add(-1)
	if in.prof != nil {
		f.profLive.Add(-1)
	}
	if in.intr != nil {
		f.rt.running.remove(in)
	}
	go func() {
		_ = in.mod.Close(context.Background())
		if in.ring != nil {
			in.ring.Close()
		}
		if f.rt.releaseCode(f.code) {
			f.rt.evictOverBudget()
		}
		f.finishIfDone()
	}()
	f.stats.liveInstances.Add(-1)
	f.signalFreed()
}

func (f *Function) signalFreed() {
	select {
	case f.freed <- struct{}{}:
	default:
	}
}

// ResponseFunc receives the guest's response. resp and every slice in it alias guest memory and
// are valid only until the function returns: copy what you keep.
type ResponseFunc func(resp *abi.Response) error

// Invoke runs one request on an instance of f and hands the response to fn before the
// instance is reused. req must stay unchanged until Invoke returns. Errors are a *GuestError
// (the guest's fault; its instance was discarded), ErrBusy, ErrClosed, the error fn returned,
// or ctx's error.
func (f *Function) Invoke(ctx context.Context, req *abi.Request, fn ResponseFunc) error {
	c := callPool.Get().(*call)
	c.ctx, c.f, c.req, c.fn = ctx, f, req, fn
	if err := f.rt.workers.Invoke(c); err != nil {
		c.reset()
		callPool.Put(c)
		return fmt.Errorf("cannot schedule %q: %w", f.name, err)
	}
	<-c.done
	err := c.err
	c.reset()
	callPool.Put(c)
	return err
}

// call is one Invoke travelling to a worker goroutine and back. Pooled: no allocation per request.
type call struct {
	ctx  context.Context
	f    *Function
	req  *abi.Request
	fn   ResponseFunc
	err  error
	done chan struct{}
	resp abi.Response
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func (c *call) reset() {
	c.ctx, c.f, c.req, c.fn, c.err = nil, nil, nil, nil, nil
	c.resp.Headers = c.resp.Headers[:0]
	c.resp.Body = nil
}

func (c *call) run() {
	c.err = c.f.execute(c.ctx, c.req, &c.resp, c.fn)
	c.done <- struct{}{}
}

// execute runs on a worker goroutine. Interruptible code runs under the sweeper's deadline;
// other code under a context deadline that wazero watches.
func (f *Function) execute(ctx context.Context, req *abi.Request, resp *abi.Response, fn ResponseFunc) error {
	if !f.code.interruptible || f.ringFn != nil {
		// Hostcalls wait on the context: it carries the deadline to the providers and to a
		// guest blocked in wait, where the interrupt flag cannot reach.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.limits.Timeout)
		defer cancel()
	}
	var in *instance
	var err error
	if p := f.prof.Load(); p == nil {
		in, err = f.acquire(ctx)
	} else {
		in, err = f.acquireProfiling(ctx, p)
	}
	if err != nil {
		var ge *GuestError
		if errors.As(err, &ge) || errors.Is(err, ErrBusy) || errors.Is(err, ErrClosed) {
			return err
		}
		return f.fault(FaultTrap, fmt.Sprintf("instantiate: %v", err))
	}
	start := time.Now()
	f.startDeadline(in)
	cctx := ctx
	if in.ring != nil {
		cctx = in.ring.Begin(ctx)
	}
	if in.sampler != nil {
		cctx = in.sampler.Begin(cctx)
	}
	err = f.call(cctx, in, req, resp)
	if in.sampler != nil {
		in.sampler.End()
	}
	if in.ring != nil {
		in.ring.End()
	}
	if in.intr != nil && in.deadline.Swap(0) == 0 && err == nil {
		// The sweeper claimed the deadline as the call returned: the flag is set, so the
		// instance cannot be reused.
		err = f.fault(FaultTimeout, fmt.Sprintf("deadline of %v exceeded", f.limits.Timeout))
	}
	if err != nil {
		f.discard(in)
		return err
	}
	f.stats.runSeconds.UpdateDuration(start)
	err = fn(resp)
	f.release(in)
	return err
}

// call encodes req into the instance's request buffer, calls wisp_handle and decodes the
// response into resp. A non-nil error means the instance must be discarded.
func (f *Function) call(ctx context.Context, in *instance, req *abi.Request, resp *abi.Response) error {
	size := abi.RequestSize(req)
	if uint64(size) > uint64(^uint32(0)) {
		return f.fault(FaultBadResponse, fmt.Sprintf("request of %d bytes exceeds wasm32 addressing", size))
	}
	if uint32(size) > in.bufCap {
		want := max(uint32(size), requestBufferSize)
		if in.alloc == nil {
			// Looked up on first use: each exported function wazero hands out carries its own
			// 10 KiB call stack, and a restored instance starts with its request buffer.
			in.alloc = in.mod.ExportedFunction(exportAlloc)
		}
		in.stack[0] = uint64(want)
		if err := in.alloc.CallWithStack(ctx, in.stack[:]); err != nil {
			return f.callError(ctx, in, err)
		}
		ptr := uint32(in.stack[0])
		if ptr == 0 {
			return f.fault(FaultExit, fmt.Sprintf("wisp_alloc(%d) returned 0: guest out of memory", want))
		}
		in.bufPtr, in.bufCap = ptr, want
	}
	view, ok := in.mem.Read(in.bufPtr, uint32(size))
	if !ok {
		return f.fault(FaultBadResponse, fmt.Sprintf("wisp_alloc returned buffer %#x+%d outside memory of %d bytes", in.bufPtr, size, in.mem.Size()))
	}
	abi.AppendRequest(view[:0], req)

	in.stack[0], in.stack[1] = uint64(in.bufPtr), uint64(size)
	if err := in.handle.CallWithStack(ctx, in.stack[:]); err != nil {
		return f.callError(ctx, in, err)
	}
	packed := in.stack[0]
	ptr, n := uint32(packed>>32), uint32(packed)
	if int64(n) > int64(f.limits.MaxResponseBytes)+1<<16 {
		return f.fault(FaultBadResponse, fmt.Sprintf("response of %d bytes exceeds the function's limit of %d", n, f.limits.MaxResponseBytes))
	}
	out, ok := in.mem.Read(ptr, n)
	if !ok {
		return f.fault(FaultBadResponse, fmt.Sprintf("response %#x+%d lies outside memory of %d bytes", ptr, n, in.mem.Size()))
	}
	if err := abi.DecodeResponse(out, resp); err != nil {
		return f.fault(FaultBadResponse, err.Error())
	}
	if resp.Status == 0 {
		return f.fault(FaultPanic, string(resp.Body))
	}
	for _, h := range resp.Headers {
		if !validHeaderName(h.Name) || !validHeaderValue(h.Value) {
			return f.fault(FaultBadResponse, fmt.Sprintf("response header %q: %q is not a valid HTTP header", h.Name, h.Value))
		}
	}
	if len(resp.Body) > f.limits.MaxResponseBytes {
		return f.fault(FaultBadResponse, fmt.Sprintf("response body of %d bytes exceeds the function's limit of %d", len(resp.Body), f.limits.MaxResponseBytes))
	}
	return nil
}

// callError classifies an error from a guest call on in.
func (f *Function) callError(ctx context.Context, in *instance, err error) error {
	if in.interrupted.Load() {
		return f.fault(FaultTimeout, fmt.Sprintf("deadline of %v exceeded", f.limits.Timeout))
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return f.fault(FaultTimeout, fmt.Sprintf("deadline of %v exceeded", f.limits.Timeout))
		case sys.ExitCodeContextCanceled:
			return ctx.Err()
		}
		return f.fault(FaultExit, fmt.Sprintf("guest exited with code %d%s", exit.ExitCode(), f.logw.tail()))
	}
	// A Go guest that cannot grow its memory prints "out of memory" and traps.
	if tail := f.logw.tail(); strings.Contains(tail, "out of memory") {
		return f.fault(FaultOOM, fmt.Sprintf("memory limit of %d bytes reached%s: %v", f.limits.MemoryBytes, tail, err))
	}
	return f.fault(FaultTrap, err.Error())
}

// fault records a guest fault under a new error id and returns it.
func (f *Function) fault(kind FaultKind, detail string) *GuestError {
	e := &GuestError{Function: f.name, Kind: kind, ID: newErrorID(), Detail: detail}
	f.stats.faults(kind).Inc()
	if out := f.rt.output; out != nil { // the function's stream, which logs it as well
		out(OutputLine{Function: f.name, Stream: "host", Level: slog.LevelError, Message: string(kind) + ": " + detail, ErrorID: e.ID})
	} else {
		f.rt.log.Error("guest fault", "function", f.name, "kind", string(kind), "error_id", e.ID, "detail", detail)
	}
	return e
}

// validHeaderName reports whether b is an HTTP token (RFC 9110 5.1), so a guest cannot smuggle
// framing into the response.
func validHeaderName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

// validHeaderValue refuses CR, LF and NUL: the bytes that would end a header line early.
func validHeaderValue(b []byte) bool {
	for _, c := range b {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// ValidHeader reports whether a guest's response header may reach the client.
func ValidHeader(name, value []byte) bool { return validHeaderName(name) && validHeaderValue(value) }

// Preinitialized reports whether instances start from a snapshot (no guest code runs when one is
// created) rather than initializing themselves.
func (f *Function) Preinitialized() bool { return f.code.image != nil || f.code.clock != 0 }

// CodeKey identifies the function's code: module, environment and warm-up. Equal keys share
// stored snapshots.
func (f *Function) CodeKey() string { return f.code.key }

// DiscardIdle closes every idle instance of f now, so the next request is a cold start. For
// benchmarks and tests.
func DiscardIdle(f *Function) { f.drainIdle() }

// importsRing reports whether a module imports the hostcall module.
func importsRing(m wazero.CompiledModule) bool {
	for _, def := range m.ImportedFunctions() {
		if mod, _, _ := def.Import(); mod == ring.ModuleName {
			return true
		}
	}
	return false
}
