package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wispfn/wisp/pool/cowmem"
)

func testRuntime(t *testing.T) wazero.Runtime {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	t.Cleanup(func() { rt.Close(ctx) })
	return rt
}

func instantiate(t *testing.T, ctx context.Context, rt wazero.Runtime, wasm []byte) api.Module {
	t.Helper()
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		t.Fatalf("cannot instantiate: %v", err)
	}
	return mod
}

func callOne(t *testing.T, mod api.Module, name string, params ...uint64) uint64 {
	t.Helper()
	res, err := mod.ExportedFunction(name).Call(context.Background(), params...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res[0]
}

func TestTakeStateModule(t *testing.T) {
	ctx := context.Background()
	rt := testRuntime(t)
	snap, err := Take(ctx, rt, stateModule().bytes(), Options{})
	if err != nil {
		t.Fatal(err)
	}

	if got, want := len(snap.Memory), 2*wasmPageBytes; got != want {
		t.Fatalf("image is %d bytes; want %d (2 pages after _initialize grew it)", got, want)
	}
	if got := string(snap.Memory[16:21]); got != "hello" {
		t.Errorf("image[16:21] = %q; want the data segment %q", got, "hello")
	}
	if got := binary.LittleEndian.Uint32(snap.Memory[70000:]); got != 0x11223344 {
		t.Errorf("image[70000] = %#x; want %#x stored by _initialize", got, 0x11223344)
	}

	m, err := parse(snap.Module)
	if err != nil {
		t.Fatalf("cannot parse rewritten module: %v", err)
	}
	for _, s := range m.sections {
		switch s.id {
		case secData, secDataCount, secStart:
			t.Errorf("rewritten module has section %d", s.id)
		}
	}
	if mem := m.memories[0]; mem.min != 2 || mem.max != 4 {
		t.Errorf("rewritten memory limits = %d..%d; want 2..4", mem.min, mem.max)
	}
	if m.exportIndex(ExportInitialize, externFunc) >= 0 {
		t.Errorf("rewritten module still exports %s", ExportInitialize)
	}
	if !bytes.Contains(snap.Module, []byte("test.custom")) {
		t.Error("rewritten module lost its custom section")
	}

	compiled, err := rt.CompileModule(ctx, snap.Module)
	if err != nil {
		t.Fatalf("rewritten module does not compile: %v", err)
	}
	img, err := cowmem.NewImage(snap.Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	actx := experimental.WithMemoryAllocator(ctx, img.Allocator(0))
	mod, err := rt.InstantiateModule(actx, compiled, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(ctx)
	tests := []struct {
		name string
		args []uint64
		want uint64
	}{
		{"g0", nil, 800}, // start ran once (7+1), then _initialize (×100); neither again
		{"g1", nil, api.EncodeI64(-5e12)},
		{"g2", nil, api.EncodeF32(3.25)},
		{"g3", nil, api.EncodeF64(-1e300)},
		{"g4", nil, 42},
		{"load", []uint64{16}, uint64(binary.LittleEndian.Uint32([]byte("hell")))},
		{"load", []uint64{70000}, 0x11223344},
		{"size", nil, 2},
	}
	for _, tt := range tests {
		if got := callOne(t, mod, tt.name, tt.args...); got != tt.want {
			t.Errorf("%s(%v) = %#x; want %#x", tt.name, tt.args, got, tt.want)
		}
	}
}

func TestRewriteGlobalValues(t *testing.T) {
	tests := []struct {
		name   string
		values []uint64 // g0..g3
	}{
		{"zero", []uint64{0, 0, 0, 0}},
		{"min", []uint64{api.EncodeI32(math.MinInt32), api.EncodeI64(math.MinInt64), api.EncodeF32(-math.MaxFloat32), api.EncodeF64(-math.MaxFloat64)}},
		{"max", []uint64{api.EncodeI32(math.MaxInt32), api.EncodeI64(math.MaxInt64), api.EncodeF32(math.MaxFloat32), api.EncodeF64(math.MaxFloat64)}},
		{"minus one and negative zero", []uint64{api.EncodeI32(-1), api.EncodeI64(-1), api.EncodeF32(float32(math.Copysign(0, -1))), api.EncodeF64(math.Copysign(0, -1))}},
		{"unsigned and NaN payloads", []uint64{0x80000001, 0x8000000000000001, 0x7fc00123, 0x7ff8000000000abc}},
	}
	ctx := context.Background()
	rt := testRuntime(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values := append(append([]uint64(nil), tt.values...), 12345, 0) // immutable g4, g5: ignored
			out, err := Rewrite(stateModule().bytes(), values, 3)
			if err != nil {
				t.Fatal(err)
			}
			mod := instantiate(t, ctx, rt, out)
			defer mod.Close(ctx)
			for i, name := range []string{"g0", "g1", "g2", "g3"} {
				got := callOne(t, mod, name)
				if i == 0 || i == 2 { // 32-bit results: wazero leaves the upper bits zero
					got = uint64(uint32(got))
				}
				if got != tt.values[i] {
					t.Errorf("%s = %#x; want %#x", name, got, tt.values[i])
				}
			}
			if got := callOne(t, mod, "g4"); got != 42 {
				t.Errorf("immutable g4 = %d; want 42 (its initializer)", got)
			}
			if got := callOne(t, mod, "size"); got != 3 {
				t.Errorf("memory pages = %d; want 3", got)
			}
			if got := callOne(t, mod, "load", 16); got != 0 {
				t.Errorf("load(16) = %#x; want 0: the data segment must be gone", got)
			}
		})
	}
}

func TestRewriteIsIdempotent(t *testing.T) {
	values := []uint64{1, 2, 3, 4, 0, 0}
	once, err := Rewrite(stateModule().bytes(), values, 2)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := Rewrite(once, values, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(once, twice) {
		t.Error("rewriting a rewritten module with the same state changed it")
	}
}

func TestRewriteMinimalModules(t *testing.T) {
	tests := []struct {
		name  string
		mod   *testModule
		pages uint32
	}{
		{"empty", &testModule{}, 0},
		{"memory only", &testModule{memories: [][]byte{limits(1)}}, 3},
		{"no exports", &testModule{memories: [][]byte{limits(1)}, globals: stateModule().globals}, 1},
	}
	ctx := context.Background()
	rt := testRuntime(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Rewrite(tt.mod.bytes(), make([]uint64, len(tt.mod.globals)), tt.pages)
			if err != nil {
				t.Fatal(err)
			}
			instantiate(t, ctx, rt, out).Close(ctx)
		})
	}
}

func TestInstrument(t *testing.T) {
	noExports := stateModule()
	noExports.exports = nil
	tests := []struct {
		name string
		mod  *testModule
	}{
		{"exports", stateModule()},
		{"no export section", noExports},
	}
	ctx := context.Background()
	rt := testRuntime(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parse(tt.mod.bytes())
			if err != nil {
				t.Fatal(err)
			}
			mod := instantiate(t, ctx, rt, m.instrument())
			defer mod.Close(ctx)
			if mod.ExportedMemory(memoryExport) == nil {
				t.Errorf("memory not exported as %q", memoryExport)
			}
			for i, want := range []uint64{7, 1, api.EncodeF32(0.5), api.EncodeF64(0.25)} {
				g := mod.ExportedGlobal(globalExport(uint32(i)))
				if g == nil {
					t.Fatalf("global %d not exported as %q", i, globalExport(uint32(i)))
				}
				if i == 0 {
					want++ // the start function ran
				}
				if got := g.Get(); got != want {
					t.Errorf("global %d = %#x; want %#x", i, got, want)
				}
			}
			for _, i := range []uint32{4, 5} {
				if mod.ExportedGlobal(globalExport(i)) != nil {
					t.Errorf("immutable global %d is exported", i)
				}
			}
		})
	}
}

func TestRewriteRefusesBadState(t *testing.T) {
	wasm := stateModule().bytes()
	tests := []struct {
		name   string
		values []uint64
		pages  uint32
		want   string
	}{
		{"too few globals", []uint64{1, 2}, 1, "got 2 global values, the module defines 6"},
		{"too many pages", make([]uint64, 6), 5, "exceed the memory's maximum 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Rewrite(wasm, tt.values, tt.pages)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Rewrite: got error %v; want one containing %q", err, tt.want)
			}
		})
	}
}

// refusal builds a variant of stateModule that Take must refuse.
type refusal struct {
	name        string
	mod         func() *testModule
	unsupported bool   // the error must wrap ErrUnsupported
	want        string // and contain this
}

var refusals = []refusal{
	{"mutable v128 global", func() *testModule {
		m := stateModule()
		m.globals = append(m.globals, globalEntry(typeV128, true, code([]byte{prefixSIMD, 12}, make([]byte, 16), end)...))
		return m
	}, true, "global 6 is a mutable v128"},
	{"mutable funcref global", func() *testModule {
		m := stateModule()
		m.globals = append(m.globals, globalEntry(typeFuncRf, true, 0xd0, 0x70, opEnd))
		return m
	}, true, "global 6 is a mutable reference"},
	{"memory.init", func() *testModule {
		m := stateModule()
		m.dataCount = true
		m.funcs[fnStart].code = code(i32c(0), i32c(0), i32c(1), []byte{prefixMisc, miscMemoryInit, 0, 0}, end)
		return m
	}, true, "function 1 uses memory.init"},
	{"data.drop", func() *testModule {
		m := stateModule()
		m.dataCount = true
		m.funcs[fnSize].code = code([]byte{prefixMisc, miscDataDrop, 0}, memSize, end)
		return m
	}, true, "function 7 uses data.drop"},
	{"table.set", func() *testModule {
		m := stateModule()
		m.tables = [][]byte{append([]byte{0x70}, limits(1)...)}
		m.funcs[fnStart].code = code(i32c(0), []byte{0xd0, 0x70, opTableSet, 0}, end)
		return m
	}, true, "function 1 uses table.set"},
	{"table.grow", func() *testModule {
		m := stateModule()
		m.tables = [][]byte{append([]byte{0x70}, limits(1)...)}
		m.funcs[fnStart].code = code([]byte{0xd0, 0x70}, i32c(1), []byte{prefixMisc, miscTableGrow, 0}, drop, end)
		return m
	}, true, "function 1 uses table.grow"},
	{"imported memory", func() *testModule {
		m := stateModule()
		m.memories = nil
		m.imports = [][]byte{importEntry("env", "memory", append([]byte{externMemory}, limits(1)...)...)}
		return m
	}, true, "imports its memory"},
	{"two memories", func() *testModule {
		m := stateModule()
		m.memories = append(m.memories, limits(1))
		return m
	}, true, "2 memories"},
	{"shared memory", func() *testModule {
		m := stateModule()
		m.memories = [][]byte{{limitsHasMax | limitsShared, 1, 4}}
		return m
	}, true, "shared memory"},
	{"imported mutable global", func() *testModule {
		m := stateModule()
		m.imports = [][]byte{importEntry("env", "g", externGlobal, typeI32, 1)}
		return m
	}, true, "imports mutable global 0"},
	{"reserved export", func() *testModule {
		m := stateModule()
		m.exports = append(m.exports, exportEntry(memoryExport, externMemory, 0))
		return m
	}, true, "reserved for snapshots"},
	{"unknown opcode", func() *testModule {
		m := stateModule()
		m.funcs[fnStart].code = code([]byte{0xfb, 0}, end) // GC proposal
		return m
	}, true, "unknown opcode 0xfb"},
	{"not a reactor", func() *testModule {
		m := stateModule()
		m.exports[0] = exportEntry("_start", externFunc, fnInit)
		return m
	}, false, "WASI command"},
	{"no _initialize", func() *testModule {
		m := stateModule()
		m.exports[0] = exportEntry("init", externFunc, fnInit)
		return m
	}, false, "does not export _initialize"},
	{"trap in _initialize", func() *testModule {
		m := stateModule()
		m.funcs[fnInit].code = code(unreach, end)
		return m
	}, false, "_initialize failed: wasm error: unreachable"},
	{"trap in start", func() *testModule {
		m := stateModule()
		m.funcs[fnStart].code = code(unreach, end)
		return m
	}, false, "cannot instantiate module"},
	{"exit in _initialize", func() *testModule {
		m := stateModule()
		// Importing a function shifts the defined ones by one.
		m.imports = [][]byte{importEntry("wasi_snapshot_preview1", "proc_exit", externFunc, 6)}
		m.types = append(m.types, funcType(paramI32, typeNone))
		m.funcs[fnInit].code = code(i32c(3), []byte{0x10, 0}, end)
		m.funcs[fnStart].code = code(globalGet(0), i32c(1), i32Add, globalSet(0), end)
		m.start = fnStart + 2
		for i := range m.exports {
			if m.exports[i][len(m.exports[i])-2] == externFunc {
				m.exports[i][len(m.exports[i])-1]++
			}
		}
		return m
	}, false, "exit_code(3)"},
	{"not wasm", func() *testModule { return nil }, false, "not a WebAssembly binary"},
}

func TestTakeRefuses(t *testing.T) {
	ctx := context.Background()
	rt := testRuntime(t)
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			wasm := []byte("#!/bin/sh\necho not wasm\n")
			if m := tt.mod(); m != nil {
				wasm = m.bytes()
			}
			_, err := Take(ctx, rt, wasm, Options{})
			if err == nil {
				t.Fatal("Take: got no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Take: got error %q; want one containing %q", err, tt.want)
			}
			if got := errors.Is(err, ErrUnsupported); got != tt.unsupported {
				t.Errorf("errors.Is(%q, ErrUnsupported) = %v; want %v", err, got, tt.unsupported)
			}
			if tt.unsupported {
				if _, err := Rewrite(wasm, make([]uint64, 8), 1); !errors.Is(err, ErrUnsupported) {
					t.Errorf("Rewrite: got error %v; want one wrapping ErrUnsupported", err)
				}
			}
		})
	}
}

func TestTakeWarmUpError(t *testing.T) {
	ctx := context.Background()
	rt := testRuntime(t)
	_, err := Take(ctx, rt, stateModule().bytes(), Options{WarmUp: func(ctx context.Context, mod api.Module) error {
		return errors.New("synthetic request failed")
	}})
	if err == nil || !strings.Contains(err.Error(), "cannot warm up guest: synthetic request failed") {
		t.Errorf("Take: got error %v; want the warm-up's", err)
	}
}

// TestParseTruncated cuts a valid module at every length: each prefix is
// an error, never a panic.
func TestParseTruncated(t *testing.T) {
	m := stateModule()
	m.dataCount = true
	wasm := m.bytes()
	for n := range len(wasm) {
		if _, err := Rewrite(wasm[:n], make([]uint64, 6), 2); err == nil && n != 8 && n != len(wasm) {
			// A cut exactly between sections is a valid module, with fewer sections.
			if _, perr := parse(wasm[:n]); perr == nil {
				continue
			}
			t.Errorf("Rewrite(first %d of %d bytes): got no error", n, len(wasm))
		}
	}
}

func FuzzRewrite(f *testing.F) {
	f.Add(stateModule().bytes(), uint32(2), uint64(7))
	for _, r := range refusals {
		if m := r.mod(); m != nil {
			f.Add(m.bytes(), uint32(1), uint64(0))
		}
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00"), uint32(0), uint64(0))
	f.Fuzz(func(t *testing.T, wasm []byte, pages uint32, value uint64) {
		m, err := parse(wasm)
		if err != nil {
			return
		}
		values := make([]uint64, len(m.globals))
		for i := range values {
			values[i] = value + uint64(i)
		}
		out, err := Rewrite(wasm, values, pages)
		if err != nil {
			return
		}
		again, err := Rewrite(out, values, pages)
		if err != nil {
			t.Fatalf("cannot rewrite a rewritten module: %v", err)
		}
		if !bytes.Equal(out, again) {
			t.Fatal("rewriting a rewritten module with the same state changed it")
		}
	})
}
