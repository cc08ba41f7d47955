package snapshot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wispfn/wisp/pool/cowmem"
	"github.com/wispfn/wisp/pool/snapshot"
)

// guestEnv is the environment of the test guest, at snapshot and restore.
var guestEnv = []string{"GREETING=hello from init"}

var (
	sharedOnce sync.Once
	sharedSnap *snapshot.Snapshot
	sharedErr  error
)

// sharedGuest returns a snapshot of the test guest taken with guestEnv,
// shared by the tests that need nothing else.
func sharedGuest(tb testing.TB) *snapshot.Snapshot {
	tb.Helper()
	wasm := guest(tb)
	sharedOnce.Do(func() {
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
		defer rt.Close(ctx)
		sharedSnap, sharedErr = snapshot.Take(ctx, rt, wasm, snapshot.Options{Env: guestEnv})
	})
	if sharedErr != nil {
		tb.Fatalf("Take: %v", sharedErr)
	}
	return sharedSnap
}

// restored is a snapshot ready to be instantiated with copy-on-write memory.
type restored struct {
	snap     *snapshot.Snapshot
	compiled wazero.CompiledModule
	image    *cowmem.Image
	base     time.Time
}

// takeGuest snapshots the test guest in rt and prepares its restoration.
func takeGuest(tb testing.TB, rt wazero.Runtime, opt snapshot.Options) *restored {
	tb.Helper()
	ctx := context.Background()
	snap, err := snapshot.Take(ctx, rt, guest(tb), opt)
	if err != nil {
		tb.Fatalf("Take: %v", err)
	}
	return prepare(tb, rt, snap)
}

func prepare(tb testing.TB, rt wazero.Runtime, snap *snapshot.Snapshot) *restored {
	tb.Helper()
	ctx := context.Background()
	compiled, err := rt.CompileModule(ctx, snap.Module)
	if err != nil {
		tb.Fatalf("CompileModule(rewritten): %v", err)
	}
	img, err := cowmem.NewImage(snap.Memory)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { img.Close() })
	return &restored{snap: snap, compiled: compiled, image: img, base: time.Now()}
}

// instance instantiates a restored instance whose memory may grow to limit
// bytes, writing its stdout to stdout (if not nil).
func (r *restored) instance(tb testing.TB, rt wazero.Runtime, limit uint64, stdout *bytes.Buffer) api.Module {
	tb.Helper()
	ctx := experimental.WithMemoryAllocator(context.Background(), r.image.Allocator(limit))
	cfg, err := r.snap.ModuleConfig(r.base, guestEnv)
	if err != nil {
		tb.Fatal(err)
	}
	cfg = cfg.WithName("")
	if stdout != nil {
		cfg = cfg.WithStdout(stdout)
	}
	mod, err := rt.InstantiateModule(ctx, r.compiled, cfg)
	if err != nil {
		tb.Fatalf("InstantiateModule(rewritten): %v", err)
	}
	tb.Cleanup(func() { mod.Close(context.Background()) })
	return mod
}

// fresh instantiates the stock test guest and initializes it as the ABI
// says: _initialize, then wisp_start.
func fresh(tb testing.TB, rt wazero.Runtime, stdout *bytes.Buffer) api.Module {
	tb.Helper()
	ctx := context.Background()
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader)
	for _, kv := range guestEnv {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	if stdout != nil {
		cfg = cfg.WithStdout(stdout)
	}
	compiled, err := rt.CompileModule(ctx, guest(tb))
	if err != nil {
		tb.Fatal(err)
	}
	mod, err := rt.InstantiateModule(ctx, compiled, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { mod.Close(context.Background()) })
	call(tb, mod, snapshot.ExportInitialize)
	call(tb, mod, snapshot.ExportStart)
	return mod
}

func TestRestoredHasInitState(t *testing.T) {
	rt := newRuntime(t)
	r := prepare(t, rt, sharedGuest(t))
	mod := r.instance(t, rt, 0, nil)
	if got := call(t, mod, "ready"); got != 1 {
		t.Fatalf("ready() = %d; want 1", got)
	}
	if mod.ExportedFunction(snapshot.ExportInitialize) != nil || mod.ExportedFunction(snapshot.ExportStart) != nil {
		t.Errorf("restored module still exports %s or %s", snapshot.ExportInitialize, snapshot.ExportStart)
	}
}

// TestRestoredMatchesFresh runs the same calls on a freshly initialized
// instance and on a restored one.
func TestRestoredMatchesFresh(t *testing.T) {
	rt := newRuntime(t)
	r := prepare(t, rt, sharedGuest(t))
	var freshOut, restoredOut bytes.Buffer
	instances := []struct {
		name string
		mod  api.Module
		out  *bytes.Buffer
	}{
		{"fresh", fresh(t, rt, &freshOut), &freshOut},
		{"restored", r.instance(t, rt, 0, &restoredOut), &restoredOut},
	}
	calls := []struct {
		name string
		args []uint64
	}{
		{"ready", nil}, {"incr", nil}, {"incr", nil}, {"set", []uint64{41}}, {"get", nil},
		{"greet", nil}, {"incr", nil}, {"hold", []uint64{2}}, {"ready", nil}, {"get", nil},
	}
	results := make([][]uint64, len(instances))
	for i, in := range instances {
		for _, c := range calls {
			results[i] = append(results[i], call(t, in.mod, c.name, c.args...))
		}
	}
	for j, c := range calls {
		if results[0][j] != results[1][j] {
			t.Errorf("call %d, %s(%v): fresh returned %d, restored %d", j, c.name, c.args, results[0][j], results[1][j])
		}
	}
	if freshOut.String() != restoredOut.String() {
		t.Errorf("stdout: fresh wrote %q, restored %q", freshOut.String(), restoredOut.String())
	}
}

func TestRestoredReadsEnv(t *testing.T) {
	rt := newRuntime(t)
	r := prepare(t, rt, sharedGuest(t))
	var out bytes.Buffer
	mod := r.instance(t, rt, 0, &out)
	call(t, mod, "greet")
	if got, want := out.String(), "hello from init|hello from init\n"; got != want {
		t.Errorf("greet wrote %q; want %q (read by main at snapshot | read now)", got, want)
	}
}

func TestRestoredCollectsGarbage(t *testing.T) {
	rt := newRuntime(t)
	r := prepare(t, rt, sharedGuest(t))
	mod := r.instance(t, rt, 0, nil)
	for range 3 {
		if got := call(t, mod, "churn", 64); got < 1 {
			t.Errorf("churn(64 MiB) ran %d collections; want at least 1", got)
		}
	}
	if got := call(t, mod, "ready"); got != 1 {
		t.Errorf("ready() = %d after collections; want 1", got)
	}
}

func TestRestoredMemoryLimit(t *testing.T) {
	rt := newRuntime(t)
	snap := sharedGuest(t)
	r := prepare(t, rt, snap)
	limit := uint64(len(snap.Memory)) + 64<<20
	mod := r.instance(t, rt, limit, nil)

	if got := call(t, mod, "hold", 16); got != 16 {
		t.Fatalf("hold(16) = %d; want 16", got)
	}
	size := uint64(mod.Memory().Size())
	if size <= uint64(len(snap.Memory)) || size > limit {
		t.Errorf("memory is %d bytes after holding 16 MiB; want it grown past the image (%d) up to the limit (%d)", size, len(snap.Memory), limit)
	}
	// Go's runtime aborts (a trap) when memory.grow fails.
	_, err := mod.ExportedFunction("hold").Call(context.Background(), 128)
	if err == nil || !strings.Contains(err.Error(), "wasm error") {
		t.Fatalf("hold(128 MiB) past a %d MiB limit: got error %v; want the guest to trap", limit>>20, err)
	}
	if size := uint64(mod.Memory().Size()); size > limit {
		t.Errorf("memory grew to %d bytes, past the %d-byte limit", size, limit)
	}

	// The failure stays in that instance.
	other := r.instance(t, rt, limit, nil)
	if got := call(t, other, "ready"); got != 1 {
		t.Errorf("another instance: ready() = %d; want 1", got)
	}
}

func TestRestoredManyCalls(t *testing.T) {
	rt := newRuntime(t)
	r := prepare(t, rt, sharedGuest(t))
	mod := r.instance(t, rt, 0, nil)
	const n = 10_000
	var got uint64
	for range n {
		got = call(t, mod, "incr")
	}
	if got != n {
		t.Errorf("incr() after %d calls = %d; want %d", n, got, n)
	}
	if got := call(t, mod, "ready"); got != 1 {
		t.Errorf("ready() = %d; want 1", got)
	}
}

func TestRestoredInstancesAreIsolated(t *testing.T) {
	rt := newRuntime(t)
	r := prepare(t, rt, sharedGuest(t))
	a := r.instance(t, rt, 0, nil)
	b := r.instance(t, rt, 0, nil)
	call(t, a, "set", 7)
	for range 5 {
		call(t, a, "incr")
	}
	call(t, a, "hold", 8)
	if got := call(t, b, "get"); got != 0 {
		t.Errorf("b.get() = %d after a.set(7); want 0", got)
	}
	if got := call(t, b, "incr"); got != 1 {
		t.Errorf("b.incr() = %d after 5 a.incr(); want 1", got)
	}
	c := r.instance(t, rt, 0, nil)
	if got := call(t, c, "get"); got != 0 {
		t.Errorf("a new instance: get() = %d; want 0", got)
	}
	if got := call(t, a, "get"); got != 7 {
		t.Errorf("a.get() = %d; want 7", got)
	}
}

func TestWarmUpIsCaptured(t *testing.T) {
	rt := newRuntime(t)
	r := takeGuest(t, rt, snapshot.Options{Env: guestEnv, WarmUp: func(ctx context.Context, mod api.Module) error {
		for range 3 {
			if _, err := mod.ExportedFunction("incr").Call(ctx); err != nil {
				return err
			}
		}
		return nil
	}})
	mod := r.instance(t, rt, 0, nil)
	if got := call(t, mod, "incr"); got != 4 {
		t.Errorf("incr() = %d after 3 in the warm-up; want 4", got)
	}
}

// TestClockNeverRunsBackwards checks the guest's monotonic clock across a
// snapshot: at snapshot it is far ahead of this process's clock, as it
// would be for a snapshot taken on a machine up for longer, or in a
// process started long ago.
func TestClockNeverRunsBackwards(t *testing.T) {
	ahead := int64(1000 * time.Hour)
	start := time.Now()
	clock := func() int64 { return ahead + int64(time.Since(start)) }
	taken := takeGuest(t, newRuntime(t), snapshot.Options{Env: guestEnv, Nanotime: clock})
	if taken.snap.Clock < ahead {
		t.Fatalf("Clock = %d; want at least %d, the clock the guest saw", taken.snap.Clock, ahead)
	}

	// A later process: a fresh runtime, the snapshot as stored.
	stored := &snapshot.Snapshot{
		Module: bytes.Clone(taken.snap.Module),
		Memory: bytes.Clone(taken.snap.Memory),
		Clock:  taken.snap.Clock,
	}
	tests := []struct {
		name string
		base time.Time
	}{
		{"base now", time.Now()},
		{"base far in the past", time.Now().Add(-1000 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRuntime(t)
			r := prepare(t, rt, stored)
			r.base = tt.base
			mod := r.instance(t, rt, 0, nil)
			prev := int64(-1)
			for i := range 100 {
				got := int64(call(t, mod, "elapsed"))
				if got < 0 || got < prev {
					t.Fatalf("call %d: the guest's clock ran backwards: %d ns since init, %d before", i, got, prev)
				}
				prev = got
			}
		})
	}

	// Control: restored with a clock of this process, the guest would see
	// time run backwards, which is what Snapshot.ModuleConfig prevents.
	t.Run("control", func(t *testing.T) {
		rt := newRuntime(t)
		r := prepare(t, rt, stored)
		ctx := experimental.WithMemoryAllocator(context.Background(), r.image.Allocator(0))
		cfg, _ := stored.ModuleConfig(time.Now(), guestEnv)
		mod, err := rt.InstantiateModule(ctx, r.compiled, cfg.WithName("").WithSysNanotime())
		if err != nil {
			t.Fatal(err)
		}
		defer mod.Close(context.Background())
		if got := int64(call(t, mod, "elapsed")); got >= 0 {
			t.Errorf("elapsed() = %d with a process clock; want < 0, or this test cannot see a clock run backwards", got)
		}
	})
}
