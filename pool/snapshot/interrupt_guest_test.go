package snapshot_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/pool/snapshot"
	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// plainRuntime returns a runtime with WASI preview 1 and without
// WithCloseOnContextDone: only the interrupt flag can stop a guest in it.
func plainRuntime(tb testing.TB) wazero.Runtime {
	tb.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
	tb.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return rt
}

// instrumented returns examples/NAME instrumented for interrupts.
func instrumented(tb testing.TB, name string) []byte {
	tb.Helper()
	wasm, err := snapshot.InstrumentInterrupt(buildtest.Wasm(tb, name))
	if err != nil {
		tb.Fatalf("cannot instrument examples/%s: %v", name, err)
	}
	return wasm
}

// start instantiates a guest and initializes it as the ABI says:
// _initialize, then wisp_start. The instance is closed with tb.
func start(tb testing.TB, rt wazero.Runtime, wasm []byte) api.Module {
	tb.Helper()
	ctx := context.Background()
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader)
	mod, err := rt.InstantiateModule(ctx, compiled, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { mod.Close(context.Background()) })
	call(tb, mod, snapshot.ExportInitialize)
	call(tb, mod, snapshot.ExportStart)
	return mod
}

func request(path string) *abi.Request {
	req := helloRequest
	req.URI = []byte(path)
	return &req
}

// interruptFlag returns the interrupt flag of mod, failing tb unless it is exported
// and 0.
func interruptFlag(tb testing.TB, mod api.Module) api.MutableGlobal {
	tb.Helper()
	g, ok := mod.ExportedGlobal(snapshot.ExportInterrupt).(api.MutableGlobal)
	if !ok {
		tb.Fatalf("%s is not exported as a mutable global", snapshot.ExportInterrupt)
	}
	if got := g.Get(); got != 0 {
		tb.Fatalf("%s = %d; want 0", snapshot.ExportInterrupt, got)
	}
	return g
}

// interruptLoop sends /loop to a faults guest, sets its interrupt flag
// after 50 ms and checks that the call traps. If the guest does not stop,
// the test fails after 10 s and the guest keeps spinning until the test
// binary exits.
func interruptLoop(t *testing.T, mod api.Module) {
	t.Helper()
	g := interruptFlag(t, mod)
	done := make(chan error, 1)
	go func() {
		_, err := serve(context.Background(), mod, request("/loop"))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	g.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "wasm error: unreachable") {
			t.Errorf("/loop: got error %v; want wasm error: unreachable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("/loop still runs 10 s after the interrupt")
	}
	if got := g.Get(); got != 1 {
		t.Errorf("%s = %d after the interrupt; want 1, which tells an interrupt from another trap", snapshot.ExportInterrupt, got)
	}
}

// TestInterruptGuestsAnswer sends the same requests to a guest and to its
// instrumented copy.
func TestInterruptGuestsAnswer(t *testing.T) {
	tests := []struct {
		guest string
		path  string
		body  string
	}{
		{"hello", "/", "Hello WASM from Golang!"},
		{"faults", "/ok", "ok"},
	}
	rt := plainRuntime(t)
	for _, tt := range tests {
		t.Run(tt.guest, func(t *testing.T) {
			ctx := context.Background()
			orig := start(t, rt, buildtest.Wasm(t, tt.guest))
			mod := start(t, rt, instrumented(t, tt.guest))
			interruptFlag(t, mod)
			for i := range 3 {
				want, err := serve(ctx, orig, request(tt.path))
				if err != nil {
					t.Fatalf("original, request %d: %v", i, err)
				}
				got, err := serve(ctx, mod, request(tt.path))
				if err != nil {
					t.Fatalf("instrumented, request %d: %v", i, err)
				}
				if got.Status != 200 || string(got.Body) != tt.body {
					t.Errorf("request %d: got %d %q; want 200 %q", i, got.Status, got.Body, tt.body)
				}
				// Go guests write headers in map order, which varies.
				sortHeaders(got.Headers)
				sortHeaders(want.Headers)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("request %d: instrumented answered %+v; the original %+v", i, got, want)
				}
			}
		})
	}
}

func sortHeaders(hs []abi.Header) {
	slices.SortFunc(hs, func(a, b abi.Header) int {
		return cmp.Or(bytes.Compare(a.Name, b.Name), bytes.Compare(a.Value, b.Value))
	})
}

func TestInterruptFaultsLoop(t *testing.T) {
	rt := plainRuntime(t)
	mod := start(t, rt, instrumented(t, "faults"))
	if resp, err := serve(context.Background(), mod, request("/ok")); err != nil || resp.Status != 200 {
		t.Fatalf("/ok: got %d, %v; want 200", resp.Status, err)
	}
	interruptLoop(t, mod)
}

// TestInterruptAfterTake snapshots an instrumented guest: the restored
// instance keeps the flag, re-reads it in its loops and answers as before.
func TestInterruptAfterTake(t *testing.T) {
	ctx := context.Background()
	rt := plainRuntime(t)
	snap, err := snapshot.Take(ctx, rt, instrumented(t, "faults"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := prepare(t, rt, snap)
	mod := r.instance(t, rt, 0, nil)
	if mod.ExportedFunction(snapshot.ExportInitialize) != nil {
		t.Errorf("restored module still exports %s", snapshot.ExportInitialize)
	}
	for i := range 2 {
		resp, err := serve(ctx, mod, request("/ok"))
		if err != nil || resp.Status != 200 || string(resp.Body) != "ok" {
			t.Fatalf("/ok, request %d: got %d %q, %v; want 200 %q", i, resp.Status, resp.Body, err, "ok")
		}
	}
	interruptLoop(t, mod)

	// Another instance of the snapshot has a flag of its own.
	other := r.instance(t, rt, 0, nil)
	if resp, err := serve(ctx, other, request("/ok")); err != nil || resp.Status != 200 {
		t.Errorf("another instance: /ok: got %d, %v; want 200", resp.Status, err)
	}
}

// TestInterruptSize logs how much the instrumentation grows the examples.
func TestInterruptSize(t *testing.T) {
	for _, name := range []string{"hello", "faults"} {
		orig := buildtest.Wasm(t, name)
		out := instrumented(t, name)
		t.Logf("examples/%s: %d bytes, instrumented %d bytes (+%d, +%.1f%%)",
			name, len(orig), len(out), len(out)-len(orig), 100*float64(len(out)-len(orig))/float64(len(orig)))
	}
}

// BenchmarkInterrupt measures one wisp_handle call of examples/hello under
// the two ways to bound its time: wazero's WithCloseOnContextDone with a
// context deadline per call, and the instrumented module with its flag, bare
// and with the timer a host arms per call to set it. "none" is the original
// module with no bound at all. TestInterruptGuestsAnswer is its correctness
// twin.
func BenchmarkInterrupt(b *testing.B) {
	const deadline = 10 * time.Second
	closing := wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfig().
		WithCompilationCache(cache).WithCloseOnContextDone(true))
	b.Cleanup(func() { closing.Close(context.Background()) })
	wasi_snapshot_preview1.MustInstantiate(context.Background(), closing)
	plain := plainRuntime(b)

	tests := []struct {
		name string
		rt   wazero.Runtime
		wasm []byte
		call func(ctx context.Context, mod api.Module, fn api.Function, stack []uint64) error
	}{
		{"none", plain, buildtest.Wasm(b, "hello"), func(ctx context.Context, _ api.Module, fn api.Function, stack []uint64) error {
			return fn.CallWithStack(ctx, stack)
		}},
		{"close-on-context-done", closing, buildtest.Wasm(b, "hello"), func(ctx context.Context, _ api.Module, fn api.Function, stack []uint64) error {
			ctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			return fn.CallWithStack(ctx, stack)
		}},
		{"flag", plain, instrumented(b, "hello"), func(ctx context.Context, _ api.Module, fn api.Function, stack []uint64) error {
			return fn.CallWithStack(ctx, stack)
		}},
		{"flag+timer", plain, instrumented(b, "hello"), func(ctx context.Context, mod api.Module, fn api.Function, stack []uint64) error {
			g := mod.ExportedGlobal(snapshot.ExportInterrupt).(api.MutableGlobal)
			t := time.AfterFunc(deadline, func() { g.Set(1) })
			defer t.Stop()
			return fn.CallWithStack(ctx, stack)
		}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			ctx := context.Background()
			mod := start(b, tt.rt, tt.wasm)
			enc := abi.AppendRequest(nil, &helloRequest)
			ptr := call(b, mod, "wisp_alloc", uint64(len(enc)))
			if !mod.Memory().Write(uint32(ptr), enc) {
				b.Fatalf("wisp_alloc returned %#x", ptr)
			}
			handle := mod.ExportedFunction("wisp_handle")
			stack := make([]uint64, 2)
			check := func() {
				b.Helper()
				stack[0], stack[1] = ptr, uint64(len(enc))
				if err := tt.call(ctx, mod, handle, stack); err != nil {
					b.Fatal(err)
				}
				raw, _ := mod.Memory().Read(uint32(stack[0]>>32), uint32(stack[0]))
				var resp abi.Response
				if err := abi.DecodeResponse(raw, &resp); err != nil || resp.Status != 200 {
					b.Fatalf("got status %d, %v; want 200", resp.Status, err)
				}
			}
			check()
			b.ReportAllocs()
			for b.Loop() {
				stack[0], stack[1] = ptr, uint64(len(enc))
				if err := tt.call(ctx, mod, handle, stack); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			check()
		})
	}
}
