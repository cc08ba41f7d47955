// Package pool runs functions: it compiles their wasm with wazero, keeps the compiled code
// resident, keeps per-function pools of live instances, and executes requests on a bounded
// goroutine pool under each function's limits.
package pool

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/ants/v2"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wispfn/wisp/pool/cowmem"
	"github.com/wispfn/wisp/ring"
)

// Config configures a Runtime. The zero value is usable: memory-only compilation cache,
// default worker count, logs to slog.Default().
type Config struct {
	// CacheDir holds wazero's file compilation cache, so a restart does not recompile.
	// Empty means an in-memory cache only.
	CacheDir string
	// Workers bounds how many requests execute guest code at once across all functions.
	// Default 256 × GOMAXPROCS: executions that wait on hostcalls hold a worker.
	Workers int
	// Logger receives guest faults and guest stdout/stderr. Default slog.Default().
	Logger *slog.Logger
	// SnapshotDir keeps pre-initialized modules and their memory images, so a restart (or a
	// reload after eviction) does not initialize guests again. Empty: snapshots live in memory.
	SnapshotDir string
	// CodeBudget bounds the estimated memory of resident compiled code. Past it, the code of
	// the least recently used functions without live instances is evicted and reloaded from
	// the file compilation cache on their next request (the disk tier). Default 8 GiB.
	CodeBudget int64
	// IdleTimeout closes instances idle for this long. Default 5 minutes.
	IdleTimeout time.Duration
	// StagedMemory bounds the memory held by instance memories prepared ahead of cold starts
	// (one per function, with the pages its first request writes already copied; see
	// cowmem.Staged). Default 256 MiB; negative stages nothing.
	StagedMemory int64
	// Output receives every line a function's instances write to stdout or stderr, and the
	// runtime's own lines about a function (its faults, under their error ids), for the
	// function's log stream (ring/provider/log), which is expected to log them too. Nil: they
	// go to Logger.
	Output func(OutputLine)
	// Ring serves guests' hostcalls (log, kv, fetch, rpc). Nil: modules importing the "wisp"
	// host module are refused at deploy. The Runtime does not close it.
	Ring *ring.Host
}

// Defaults of Config.
const (
	DefaultCodeBudget   = 8 << 30
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultStagedMemory = 256 << 20
)

// Runtime owns the wazero runtime, the compilation cache, the goroutine pool that executes
// requests, and every Function compiled through it. It is safe for concurrent use.
// Close it after closing (or abandoning) its functions.
type Runtime struct {
	// fast runs code instrumented with an interrupt flag (pool/snapshot.InstrumentInterrupt):
	// deadlines cost a flag check per loop iteration. guard has wazero's close-on-context-done
	// for what cannot be instrumented, and for pre-initialization that the interpreter took
	// too long over (its copy of the guest runs inside pool/snapshot). interp is wazero's
	// interpreter, where pre-initialization runs first: it needs no compile (takeSnapshot).
	fast    wazero.Runtime
	guard   wazero.Runtime
	interp  wazero.Runtime
	running runningSet
	ring    *ring.Host
	cache   wazero.CompilationCache
	workers *ants.PoolWithFuncGeneric[*call]
	log     *slog.Logger
	output  func(OutputLine) // Config.Output
	stats   statsRegistry

	snapDir     string
	budget      int64
	stage       *cowmem.StageBudget
	idleTimeout time.Duration
	stopReaper  context.CancelFunc
	reaperDone  chan struct{}
	sweeperDone chan struct{}

	mu     sync.Mutex
	closed bool
	fns    map[*Function]struct{} // live functions: for the reaper
	codes  map[string]*code       // code in use by functions, by key: shared, and for eviction
}

// New starts a Runtime.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("cannot open compilation cache %q: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	newRuntime := func(rc wazero.RuntimeConfig) (wazero.Runtime, error) {
		wz := wazero.NewRuntimeWithConfig(ctx, rc.WithMemoryLimitPages(MaxMemoryBytes/wasmPage))
		if _, err := wasi_snapshot_preview1.Instantiate(ctx, wz); err != nil {
			_ = wz.Close(ctx)
			return nil, fmt.Errorf("cannot instantiate WASI: %w", err)
		}
		return wz, nil
	}
	if cfg.Ring != nil {
		prev := newRuntime
		newRuntime = func(rc wazero.RuntimeConfig) (wazero.Runtime, error) {
			wz, err := prev(rc)
			if err != nil {
				return nil, err
			}
			if err := cfg.Ring.Instantiate(ctx, wz); err != nil {
				_ = wz.Close(ctx)
				return nil, fmt.Errorf("cannot instantiate the hostcall module: %w", err)
			}
			return wz, nil
		}
	}
	compiler := wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache)
	fast, err := newRuntime(compiler)
	if err != nil {
		return nil, err
	}
	guard, err := newRuntime(compiler.WithCloseOnContextDone(true))
	if err != nil {
		_ = fast.Close(ctx)
		return nil, err
	}
	interp, err := newRuntime(wazero.NewRuntimeConfigInterpreter().WithCloseOnContextDone(true))
	if err != nil {
		_ = fast.Close(ctx)
		_ = guard.Close(ctx)
		return nil, err
	}
	n := cfg.Workers
	if n <= 0 {
		n = 256 * runtime.GOMAXPROCS(0)
	}
	workers, err := ants.NewPoolWithFuncGeneric(n, (*call).run)
	if err != nil {
		_ = fast.Close(ctx)
		_ = guard.Close(ctx)
		_ = interp.Close(ctx)
		return nil, fmt.Errorf("cannot start %d workers: %w", n, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Runtime{
		fast: fast, guard: guard, interp: interp, cache: cache, workers: workers, log: log, output: cfg.Output, ring: cfg.Ring,
		snapDir: cfg.SnapshotDir, budget: cfg.CodeBudget, idleTimeout: cfg.IdleTimeout,
		fns: map[*Function]struct{}{}, codes: map[string]*code{}, reaperDone: make(chan struct{}), sweeperDone: make(chan struct{}),
	}
	if r.budget <= 0 {
		r.budget = DefaultCodeBudget
	}
	if r.idleTimeout <= 0 {
		r.idleTimeout = DefaultIdleTimeout
	}
	staged := cfg.StagedMemory
	if staged == 0 {
		staged = DefaultStagedMemory
	}
	r.stage = cowmem.NewStageBudget(max(staged, 0))
	rctx, cancel := context.WithCancel(context.Background())
	r.stopReaper = cancel
	go r.reap(rctx)
	go r.interruptOverdue(rctx)
	return r, nil
}

// Close stops the worker pool and closes the wazero runtime and every instance in it.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.stopReaper()
	<-r.reaperDone
	<-r.sweeperDone
	r.workers.Release()
	r.stats.mu.Lock()
	for name, s := range r.stats.m {
		metrics.UnregisterSet(s.set, true)
		delete(r.stats.m, name)
	}
	r.stats.mu.Unlock()
	err := r.fast.Close(ctx)
	if gerr := r.guard.Close(ctx); err == nil {
		err = gerr
	}
	if ierr := r.interp.Close(ctx); err == nil {
		err = ierr
	}
	if cerr := r.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// randSource feeds guests' random_get. crypto/rand's Reader is safe for concurrent use.
var randSource = rand.Reader
