// Package snapshot pre-initializes a guest: it runs the guest's
// initialization once, captures the resulting globals and linear memory, and
// rewrites the module so that an instance starts in that state without
// running any initialization code (Wizer's technique, done with wazero).
//
// A restored instance is the rewritten module (Snapshot.Module) instantiated
// with its linear memory set to the image (Snapshot.Memory), normally through
// a copy-on-write mapping (pool/cowmem), and configured by
// Snapshot.ModuleConfig. InstrumentInterrupt, another rewrite, gives a guest
// a flag that stops a running call. See RATIONALE.md for the decisions
// behind them.
package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// ErrUnsupported is wrapped by the errors of Take and Rewrite for a valid
// module whose state a snapshot cannot capture or restore exactly: an
// imported, shared or 64-bit memory, several memories, a mutable global of a
// vector or reference type, an imported mutable global, an instruction that
// reads data segments (memory.init, data.drop) or changes tables (table.set,
// table.grow, table.fill, table.copy, table.init), or an instruction the
// scanner does not know. Such a module can still run, initialized at each
// instantiation. InstrumentInterrupt wraps it too, for the modules it
// cannot instrument.
var ErrUnsupported = errors.New("unsupported by snapshots")

// ErrNotReactor is wrapped by the error of Take for a module that does not
// export ExportInitialize: there is no initialization to capture.
var ErrNotReactor = errors.New("not a WASI reactor")

// Options configures Take. The zero value is usable.
type Options struct {
	// Env holds the environment variables the guest sees, as "KEY=value".
	// A guest may read them during initialization (Go copies the whole
	// environment then) and keep what it read in its state: instances
	// restored from the snapshot must be given the same ones.
	Env []string

	// Stdout and Stderr receive what the guest writes during
	// initialization. Nil discards it.
	Stdout, Stderr io.Writer

	// Nanotime is the guest's monotonic clock during initialization, in
	// nanoseconds. It must never run backwards. Nil means the host's
	// monotonic clock, counted from the start of Take.
	Nanotime func() int64

	// RandSource is the guest's source of random bytes during
	// initialization. Nil means crypto/rand.
	RandSource io.Reader

	// WarmUp, if not nil, is called after initialization and before the
	// snapshot, with the instrumented instance, for example to run one
	// synthetic request so that lazy first-call work ends up in the
	// snapshot too. It must not keep mod. An error fails Take.
	WarmUp func(ctx context.Context, mod api.Module) error

	// Probe, if not nil, is called after the snapshot is captured, with the
	// same instance, for example to serve the request an instance serves
	// first. The 4 KiB pages of the image it writes are Snapshot.FirstWrites.
	// It must not keep mod. An error fails Take.
	Probe func(ctx context.Context, mod api.Module) error
}

// Snapshot is the state of a guest after initialization.
type Snapshot struct {
	// Module is the rewritten module (see Rewrite): instantiating it
	// runs no initialization code, and its memory's minimum is the
	// image's size in pages.
	Module []byte

	// Memory is the linear memory image, len(Memory) = pages × 64 KiB.
	// An instance of Module must start with exactly these bytes in its
	// memory.
	Memory []byte

	// Clock is the guest's monotonic clock (Options.Nanotime) read right
	// after the snapshot was taken: no value the guest saw is later.
	// Instances restored from the snapshot must see a clock that starts at
	// Clock or later (see Nanotime), even in another process.
	Clock int64

	// FirstWrites are the indices of the 4 KiB pages of Memory that
	// Options.Probe wrote, in increasing order: a hint of the pages a
	// restored instance copies on its first call, which a host can copy
	// ahead of it (nil without a probe).
	FirstWrites []uint32
}

// PageSize is the unit of Snapshot.FirstWrites: the host's page, not wasm's.
const PageSize = 4096

// Take instantiates wasm in rt with WASI preview 1, initializes it
// (ExportInitialize, then ExportStart if the module exports it, then
// opt.WarmUp), and returns its state as a Snapshot.
//
// rt must resolve every import of the module other than WASI preview 1 (Take
// instantiates wasi_snapshot_preview1 in rt if it is not there yet); imports
// that have side effects should refuse during initialization, as whatever
// they do is not captured. Set wazero.RuntimeConfig.WithCloseOnContextDone
// for ctx to stop a guest that loops forever. Take compiles an instrumented
// copy of wasm in rt and closes it before returning; compiling
// Snapshot.Module is the caller's.
//
// Take may run concurrently with other calls, on the same runtime too: the
// instance it initializes is anonymous.
//
// A module that is not a WASI reactor (no ExportInitialize export) is
// refused. A module Take cannot capture is refused with an error wrapping
// ErrUnsupported, before any of its code runs. A guest that traps or exits
// during initialization fails Take with the guest's error.
func Take(ctx context.Context, rt wazero.Runtime, wasm []byte, opt Options) (*Snapshot, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, fmt.Errorf("cannot parse module: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("cannot snapshot module: %w", err)
	}
	if m.exportIndex(ExportInitialize, externFunc) < 0 {
		if m.exportIndex("_start", externFunc) >= 0 {
			return nil, fmt.Errorf("cannot snapshot module: %w: it is a WASI command (exports _start), not a reactor exporting %s; build Go guests with -buildmode=c-shared", ErrNotReactor, ExportInitialize)
		}
		return nil, fmt.Errorf("cannot snapshot module: %w: it does not export %s", ErrNotReactor, ExportInitialize)
	}
	if len(m.memories) == 0 {
		return nil, errors.New("cannot snapshot module: it has no memory")
	}
	cfg, nanotime, err := opt.moduleConfig()
	if err != nil {
		return nil, err
	}

	compiled, err := rt.CompileModule(ctx, m.instrument())
	if err != nil {
		return nil, fmt.Errorf("cannot compile module: %w", err)
	}
	defer compiled.Close(ctx)
	if err := instantiateWASI(ctx, rt); err != nil {
		return nil, err
	}
	mod, err := rt.InstantiateModule(ctx, compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot instantiate module: %w", err)
	}
	defer mod.Close(ctx)

	for _, name := range []string{ExportInitialize, ExportStart} {
		fn := mod.ExportedFunction(name)
		if fn == nil {
			continue
		}
		if _, err := fn.Call(ctx); err != nil {
			return nil, fmt.Errorf("cannot initialize guest: %s failed: %w", name, err)
		}
	}
	if opt.WarmUp != nil {
		if err := opt.WarmUp(ctx, mod); err != nil {
			return nil, fmt.Errorf("cannot warm up guest: %w", err)
		}
	}
	if mod.IsClosed() {
		return nil, errors.New("cannot snapshot guest: it exited during initialization")
	}

	values := make([]uint64, len(m.globals))
	for i, g := range m.globals {
		if g.mutable {
			values[i] = mod.ExportedGlobal(globalExport(uint32(len(m.importedGlobals) + i))).Get()
		}
	}
	mem := mod.ExportedMemory(memoryExport)
	pages, _ := mem.Grow(0) // Size, in bytes, cannot say 4 GiB
	view, ok := mem.Read(0, mem.Size())
	if !ok || uint64(len(view)) != uint64(pages)*wasmPageBytes {
		return nil, fmt.Errorf("cannot read guest memory of %d pages", pages)
	}
	s := &Snapshot{Memory: append([]byte(nil), view...), Clock: nanotime()}
	if s.Module, err = m.rewrite(values, pages); err != nil {
		return nil, err
	}
	if opt.Probe != nil {
		if err := opt.Probe(ctx, mod); err != nil {
			return nil, fmt.Errorf("cannot probe guest: %w", err)
		}
		// A guest that exited in the probe has no memory left to compare (it may have been
		// unmapped): it gets no first writes, unless time ran out, which fails Take as it
		// would have failed initialization.
		switch {
		case !mod.IsClosed():
			if s.FirstWrites, err = writtenPages(mem, s.Memory); err != nil {
				return nil, err
			}
		case ctx.Err() != nil:
			return nil, fmt.Errorf("cannot probe guest: %w", ctx.Err())
		}
	}
	return s, nil
}

// writtenPages returns the indices of the PageSize pages of image that mem
// no longer holds.
func writtenPages(mem api.Memory, image []byte) ([]uint32, error) {
	view, ok := mem.Read(0, uint32(len(image)))
	if !ok {
		return nil, errors.New("cannot read guest memory after the probe: it shrank")
	}
	var pages []uint32
	for off := 0; off < len(image); off += PageSize {
		if !bytes.Equal(view[off:off+PageSize], image[off:off+PageSize]) {
			pages = append(pages, uint32(off/PageSize))
		}
	}
	return pages, nil
}

// moduleConfig returns the configuration of the instance Take initializes,
// and the guest's monotonic clock.
func (opt *Options) moduleConfig() (wazero.ModuleConfig, func() int64, error) {
	nanotime := opt.Nanotime
	if nanotime == nil {
		start := time.Now()
		nanotime = func() int64 { return int64(time.Since(start)) }
	}
	random := opt.RandSource
	if random == nil {
		random = rand.Reader
	}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // Take calls them, to report which one failed
		WithSysWalltime().
		WithNanotime(nanotime, 1).
		WithSysNanosleep().
		WithRandSource(random)
	if opt.Stdout != nil {
		cfg = cfg.WithStdout(opt.Stdout)
	}
	if opt.Stderr != nil {
		cfg = cfg.WithStderr(opt.Stderr)
	}
	cfg, err := withEnv(cfg, opt.Env)
	return cfg, nanotime, err
}

func withEnv(cfg wazero.ModuleConfig, env []string) (wazero.ModuleConfig, error) {
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("cannot set environment variable %q: want KEY=value", kv)
		}
		cfg = cfg.WithEnv(k, v)
	}
	return cfg, nil
}

// instantiateWASI makes sure rt has WASI preview 1.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	if rt.Module(wasi_snapshot_preview1.ModuleName) != nil {
		return nil
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil && rt.Module(wasi_snapshot_preview1.ModuleName) == nil {
		return fmt.Errorf("cannot instantiate %s: %w", wasi_snapshot_preview1.ModuleName, err)
	}
	return nil
}

// Nanotime returns the monotonic clock of an instance restored from a
// snapshot whose clock read clock: clock plus the time elapsed since base on
// the host's monotonic clock. base must be an instant of this process (from
// time.Now, possibly moved with Add), no later than the instance's
// creation, for example when the snapshot was loaded; a snapshot read back
// from storage in a later process keeps its Clock, so the guest's clock
// never runs backwards across processes either. Safe for concurrent use.
func Nanotime(clock int64, base time.Time) func() int64 {
	return func() int64 {
		return clock + max(int64(time.Since(base)), 0)
	}
}

// ModuleConfig returns the configuration an instance restored from s needs:
// no start function, the clock Nanotime(s.Clock, base) with 1 ns resolution,
// the system wall clock and sleep, crypto/rand as random source and env
// (which should be the Options.Env of Take). Add a name, stdout and stderr as
// needed.
func (s *Snapshot) ModuleConfig(base time.Time, env []string) (wazero.ModuleConfig, error) {
	cfg := wazero.NewModuleConfig().
		WithStartFunctions().
		WithSysWalltime().
		WithNanotime(Nanotime(s.Clock, base), 1).
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	return withEnv(cfg, env)
}
