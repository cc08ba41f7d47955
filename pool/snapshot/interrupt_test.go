package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// plainRuntime returns a runtime without WithCloseOnContextDone: only the
// interrupt flag can stop a guest in it.
func plainRuntime(tb testing.TB) wazero.Runtime {
	tb.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig())
	tb.Cleanup(func() { rt.Close(ctx) })
	return rt
}

// Instructions of the loop functions.
var (
	loopEmpty = []byte{opLoop, blockEmpty}
	brIf0     = []byte{0x0d, 0}
	br0       = []byte{0x0c, 0}
	i32Sub    = []byte{0x6b}
	localTee0 = []byte{0x22, 0}
)

// loopModule returns stateModule with three more functions, which loop:
//
//	spin:         loops forever
//	countdown(n): counts n down to 0 in a loop, returns 0
//	carry:        passes 5 through a loop with a parameter, returns it
func loopModule() *testModule {
	m := stateModule()
	m.funcs = append(m.funcs,
		testFunc{0, code(loopEmpty, br0, end, end)},
		testFunc{5, code(loopEmpty, localGet(0), i32c(1), i32Sub, localTee0, brIf0, end, localGet(0), end)},
		testFunc{1, code(i32c(5), []byte{opLoop, 5}, end, end)}, // type 5: [i32] -> [i32]
	)
	n := uint32(len(m.funcs))
	m.exports = append(m.exports,
		exportEntry("spin", externFunc, n-3),
		exportEntry("countdown", externFunc, n-2),
		exportEntry("carry", externFunc, n-1),
	)
	m.custom = append(m.custom, append(appendName(nil, ".debug_line"), 1, 2, 3))
	return m
}

// interruptFlag returns the interrupt flag of mod, failing tb if it is not
// exported as a mutable i32 set to 0.
func interruptFlag(tb testing.TB, mod api.Module) api.MutableGlobal {
	tb.Helper()
	g, ok := mod.ExportedGlobal(ExportInterrupt).(api.MutableGlobal)
	if !ok {
		tb.Fatalf("%s is not exported as a mutable global", ExportInterrupt)
	}
	if g.Type() != api.ValueTypeI32 || g.Get() != 0 {
		tb.Fatalf("%s is a %s = %d; want an i32 = 0", ExportInterrupt, api.ValueTypeName(g.Type()), g.Get())
	}
	return g
}

// interrupt calls fn, sets flag after delay and returns the call's error.
// It fails tb if the call does not return within 10 s; the guest then
// keeps running until the test binary exits.
func interrupt(tb testing.TB, flag api.MutableGlobal, delay time.Duration, fn api.Function, params ...uint64) error {
	tb.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := fn.Call(context.Background(), params...)
		done <- err
	}()
	select {
	case err := <-done:
		tb.Fatalf("the call returned before the interrupt, with error %v", err)
	case <-time.After(delay):
	}
	flag.Set(1)
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		tb.Fatal("the call still runs 10 s after the interrupt")
	}
	return nil
}

func TestInstrumentInterrupt(t *testing.T) {
	ctx := context.Background()
	rt := plainRuntime(t)
	orig := loopModule().bytes()
	out, err := InstrumentInterrupt(orig)
	if err != nil {
		t.Fatal(err)
	}
	checkInstrumented(t, orig, out)
	if bytes.Contains(out, []byte(".debug_line")) {
		t.Error("the DWARF section is still there, with offsets the checks shifted")
	}
	if !bytes.Contains(out, []byte("test.custom")) {
		t.Error("the custom section is gone")
	}

	want := instantiate(t, ctx, rt, orig)
	defer want.Close(ctx)
	mod := instantiate(t, ctx, rt, out)
	defer mod.Close(ctx)
	flag := interruptFlag(t, mod)
	calls := []struct {
		name string
		args []uint64
	}{
		{ExportInitialize, nil}, {"g0", nil}, {"g1", nil}, {"g2", nil}, {"g3", nil}, {"g4", nil},
		{"load", []uint64{16}}, {"load", []uint64{70000}}, {"size", nil}, {"countdown", []uint64{1000}}, {"carry", nil},
	}
	for _, c := range calls {
		w, err1 := want.ExportedFunction(c.name).Call(ctx, c.args...)
		got, err2 := mod.ExportedFunction(c.name).Call(ctx, c.args...)
		if err1 != nil || err2 != nil || !slices.Equal(got, w) {
			t.Errorf("%s(%v) = %v, %v; want %v, %v as the original module", c.name, c.args, got, err2, w, err1)
		}
	}
	if got := callOne(t, mod, "carry"); got != 5 {
		t.Errorf("carry() = %d; want 5", got)
	}

	err = interrupt(t, flag, 20*time.Millisecond, mod.ExportedFunction("spin"))
	if err == nil || !strings.Contains(err.Error(), "wasm error: unreachable") {
		t.Errorf("spin: got error %v; want wasm error: unreachable", err)
	}
	// The flag stays set: every call traps within checksPerYield checks
	// until it is reset.
	if _, err := mod.ExportedFunction("countdown").Call(ctx, 2*checksPerYield); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("countdown with the flag set: got error %v; want wasm error: unreachable", err)
	}
	flag.Set(0)
	if got := callOne(t, mod, "countdown", 2*checksPerYield); got != 0 {
		t.Errorf("countdown(%d) after resetting the flag = %d; want 0", 2*checksPerYield, got)
	}
}

// TestInstrumentInterruptShapes instruments modules with and without the
// sections the instrumentation extends, with an imported global (imported
// globals come first in the index space) and with an imported memory.
func TestInstrumentInterruptShapes(t *testing.T) {
	env := &testModule{
		memories: [][]byte{limits(1)},
		globals:  [][]byte{globalEntry(typeI32, false, code(i32c(5), end)...)},
		exports:  [][]byte{exportEntry("g", externGlobal, 0), exportEntry("memory", externMemory, 0)},
	}
	imported := &testModule{
		types:    [][]byte{funcType(typeNone, typeNone), funcType(typeNone, resultI32)},
		imports:  [][]byte{importEntry("env", "g", externGlobal, typeI32, 0)},
		memories: [][]byte{limits(1)},
		funcs: []testFunc{
			{0, code(loopEmpty, br0, end, end)},
			{1, code(globalGet(0), end)},
			{1, code(globalGet(1), end)},
		},
		globals: [][]byte{globalEntry(typeI32, true, code(i32c(7), end)...)},
		exports: [][]byte{
			exportEntry("spin", externFunc, 0),
			exportEntry("imported", externFunc, 1),
			exportEntry("defined", externFunc, 2),
		},
	}
	noGlobals := loopModule()
	noGlobals.globals = nil
	noGlobals.funcs = noGlobals.funcs[len(noGlobals.funcs)-3:]
	noGlobals.exports = [][]byte{exportEntry("spin", externFunc, 0)}
	noGlobals.start = 0
	noExports := loopModule()
	noExports.exports = nil
	noExports.custom = [][]byte{append(appendName(nil, "before"), 0)}
	importedMemory := loopModule()
	importedMemory.memories = nil
	importedMemory.imports = [][]byte{importEntry("env", "memory", append([]byte{externMemory}, limits(1)...)...)}
	memory64 := loopModule()
	memory64.memories = [][]byte{{limitsMem64, 1}}

	tests := []struct {
		name  string
		mod   *testModule
		calls map[string]uint64 // export: result
		run   bool              // wazero runs it
	}{
		{"imported global", imported, map[string]uint64{"imported": 5, "defined": 7}, true},
		{"no global section", noGlobals, nil, true},
		{"no export section", noExports, nil, true},
		{"imported memory", importedMemory, nil, true},
		{"64-bit memory", memory64, nil, false},
	}
	ctx := context.Background()
	rt := plainRuntime(t)
	if _, err := rt.InstantiateWithConfig(ctx, env.bytes(), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.mod.bytes()
			out, err := InstrumentInterrupt(orig)
			if err != nil {
				t.Fatal(err)
			}
			checkInstrumented(t, orig, out)
			if !tt.run {
				return
			}
			mod := instantiate(t, ctx, rt, out)
			defer mod.Close(ctx)
			flag := interruptFlag(t, mod)
			for name, want := range tt.calls {
				if got := callOne(t, mod, name); got != want {
					t.Errorf("%s() = %d; want %d", name, got, want)
				}
			}
			if spin := mod.ExportedFunction("spin"); spin != nil {
				if err := interrupt(t, flag, time.Millisecond, spin); err == nil || !strings.Contains(err.Error(), "unreachable") {
					t.Errorf("spin: got error %v; want wasm error: unreachable", err)
				}
			}
		})
	}
}

func TestInstrumentInterruptRefuses(t *testing.T) {
	taken := stateModule()
	taken.exports = append(taken.exports, exportEntry(ExportInterrupt, externFunc, 0))
	unknown := loopModule()
	unknown.funcs[fnStart].code = code([]byte{0xfb, 0}, end) // GC proposal
	unterminated := loopModule()
	unterminated.funcs[fnStart].code = code(loopEmpty, br0, end)
	tests := []struct {
		name        string
		wasm        []byte
		unsupported bool
		want        string
	}{
		{"export taken", taken.bytes(), true, `already exports "wisp_interrupt"`},
		{"no memory", (&testModule{}).bytes(), true, "it has no memory"},
		{"unknown opcode", unknown.bytes(), true, "function 1: unknown opcode 0xfb"},
		{"not wasm", []byte("#!/bin/sh\n"), false, "not a WebAssembly binary"},
		{"unterminated body", unterminated.bytes(), false, "function 1: unexpected end of input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := InstrumentInterrupt(tt.wasm)
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q; want one containing %q", err, tt.want)
			}
			if got := errors.Is(err, ErrUnsupported); got != tt.unsupported {
				t.Errorf("errors.Is(%q, ErrUnsupported) = %v; want %v", err, got, tt.unsupported)
			}
		})
	}
}

// TestInstrumentInterruptTruncated cuts a valid module at every length:
// each prefix is an error or a valid module, never a panic.
func TestInstrumentInterruptTruncated(t *testing.T) {
	wasm := loopModule().bytes()
	for n := range len(wasm) {
		if out, err := InstrumentInterrupt(wasm[:n]); err == nil {
			checkInstrumented(t, wasm[:n], out)
		}
	}
}

// TestInstrumentInterruptCompiles instruments the modules of the other
// tests: each one that wazero compiles must compile instrumented.
func TestInstrumentInterruptCompiles(t *testing.T) {
	mods := []*testModule{loopModule(), stateModule()}
	for _, r := range refusals {
		if m := r.mod(); m != nil {
			mods = append(mods, m)
		}
	}
	ctx := context.Background()
	rt := plainRuntime(t)
	for i, m := range mods {
		wasm := m.bytes()
		c, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			continue
		}
		c.Close(ctx)
		out, err := InstrumentInterrupt(wasm)
		if errors.Is(err, ErrUnsupported) {
			continue
		}
		if err != nil {
			t.Errorf("module %d: %v", i, err)
			continue
		}
		if c, err := rt.CompileModule(ctx, out); err != nil {
			t.Errorf("module %d compiles, not instrumented: %v", i, err)
		} else {
			c.Close(ctx)
		}
	}
}

// FuzzInstrumentInterrupt checks that any input is refused or instrumented
// exactly (checkInstrumented), never a panic. It does not compile with
// wazero: v1.12 panics on some malformed modules, and allocates what a
// module's vector counts declare (3 GiB for the function section of a
// 241-byte module), which stalls fuzzing workers.
func FuzzInstrumentInterrupt(f *testing.F) {
	f.Add(loopModule().bytes())
	f.Add(stateModule().bytes())
	for _, r := range refusals {
		if m := r.mod(); m != nil {
			f.Add(m.bytes())
		}
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := InstrumentInterrupt(wasm)
		if err != nil {
			return
		}
		checkInstrumented(t, wasm, out)
		if _, err := InstrumentInterrupt(out); !errors.Is(err, ErrUnsupported) {
			t.Errorf("instrumenting twice: got error %v; want one wrapping ErrUnsupported", err)
		}
	})
}

// checkInstrumented checks that out is orig instrumented: with the checks
// removed, every function body is the same; the global and export sections
// have one more entry, the flag, after the original ones; every other
// section, custom ones included and DWARF ones excepted, is the same and in
// the same order.
func checkInstrumented(t *testing.T, orig, out []byte) {
	t.Helper()
	in, err := parse(orig)
	if err != nil {
		t.Fatalf("cannot parse the original module: %v", err)
	}
	m, err := parse(out)
	if err != nil {
		t.Fatalf("cannot parse the instrumented module: %v", err)
	}
	countdown := uint32(len(in.importedGlobals) + len(in.globals))
	index := countdown + 1
	if got, want := len(m.globals), len(in.globals)+2; got != want {
		t.Fatalf("%d defined globals; want %d", got, want)
	}
	if g := m.globals[len(in.globals)]; g.valType != typeI32 || !g.mutable || !bytes.Equal(g.init, append(i32c(checksPerYield), opEnd)) {
		t.Errorf("the countdown is %+v; want a mutable i32 = %d", g, checksPerYield)
	}
	if g := m.globals[len(in.globals)+1]; g.valType != typeI32 || !g.mutable || !bytes.Equal(g.init, []byte{opI32Const, 0, opEnd}) {
		t.Errorf("the flag is %+v; want a mutable i32 = 0", g)
	}
	if !bytes.HasPrefix(m.entries(secGlobal), in.entries(secGlobal)) {
		t.Error("the original globals changed")
	}
	if got, want := len(m.exports), len(in.exports)+1; got != want {
		t.Fatalf("%d exports; want %d", got, want)
	}
	if e := m.exports[len(in.exports)]; e != (export{ExportInterrupt, externGlobal, index}) {
		t.Errorf("last export is %+v; want global %d exported as %q", e, index, ExportInterrupt)
	}
	if !bytes.HasPrefix(m.entries(secExport), in.entries(secExport)) {
		t.Error("the original exports changed")
	}

	check := interruptCheck(countdown, index, in.memories[0].flags&limitsMem64 != 0)
	want, got := bodies(t, in.code, nil), bodies(t, m.code, check)
	if len(got) != len(want) {
		t.Fatalf("%d function bodies; want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("function %d: body with the checks removed is\n%x\nwant\n%x", i, got[i], want[i])
		}
	}

	var kept, wantKept [][]byte
	for _, s := range in.sections {
		switch {
		case s.id == secGlobal, s.id == secExport, s.id == secCode:
		case s.id == secCustom && isDWARF(orig[s.payload:s.end]):
		default:
			wantKept = append(wantKept, orig[s.start:s.end])
		}
	}
	for _, s := range m.sections {
		if s.id != secGlobal && s.id != secExport && s.id != secCode {
			kept = append(kept, out[s.start:s.end])
		}
	}
	if len(kept) != len(wantKept) {
		t.Fatalf("%d other sections; want %d", len(kept), len(wantKept))
	}
	for i := range kept {
		if !bytes.Equal(kept[i], wantKept[i]) {
			t.Errorf("section %d changed: got %x; want %x", kept[i][0], kept[i], wantKept[i])
		}
	}
}

// bodies returns the function bodies of a code section payload. If check is
// not nil, each body must have it at its entry and at the start of every
// loop body, and it is removed.
func bodies(t *testing.T, code, check []byte) [][]byte {
	t.Helper()
	if code == nil {
		return nil
	}
	r := reader{b: code}
	var out [][]byte
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		src := r.bytes(uint64(r.u32()))
		br := reader{b: src}
		for groups := br.u32(); groups > 0 && br.err == nil; groups-- {
			br.u32()
			br.valType()
		}
		var body []byte
		copied := br.off
		skip := func() error {
			if !bytes.HasPrefix(src[br.off:], check) {
				return errors.New("no check")
			}
			body = append(body, src[copied:br.off]...)
			br.off += len(check)
			copied = br.off
			return nil
		}
		var err error
		if check != nil {
			err = skip()
		}
		if err == nil {
			err = walkExpr(&br, func(op byte, _ uint32, at int) error {
				if op == opLoop && check != nil {
					if err := skip(); err != nil {
						return fmt.Errorf("no check after the loop at offset %d", at)
					}
				}
				return nil
			})
		}
		if err != nil || br.err != nil || br.off != len(src) {
			t.Fatalf("function %d: cannot walk its body: %v %v", len(out), err, br.err)
		}
		out = append(out, append(body, src[copied:]...))
	}
	if r.err != nil || r.off != len(code) {
		t.Fatalf("cannot read the code section: %v", r.err)
	}
	return out
}

func TestInterruptCheck(t *testing.T) {
	want := code(
		globalGet(3), i32c(1), i32Sub, globalSet(3), globalGet(3), i32c(0), []byte{opI32LeS},
		[]byte{opIf, blockEmpty},
		i32c(0), memGrow, drop,
		globalGet(4), []byte{opIf, blockEmpty}, unreach, end,
		i32c(checksPerYield), globalSet(3),
		end)
	if got := interruptCheck(3, 4, false); !bytes.Equal(got, want) {
		t.Errorf("interruptCheck(3, 4, 32-bit) = %x; want %x", got, want)
	}
	want64 := bytes.Replace(want, code(i32c(0), memGrow), code(i64c(0), memGrow), 1)
	if got := interruptCheck(3, 4, true); !bytes.Equal(got, want64) {
		t.Errorf("interruptCheck(3, 4, 64-bit) = %x; want %x", got, want64)
	}
}

// TestInterruptDuringGC interrupts a guest that spins while the host
// collects garbage. A collection waits for every goroutine to reach a safe
// point, which native code never is: a guest that did not leave it would
// stop the whole process, the goroutine that sets the flag included. The
// test runs in a child process, which the parent kills if it hangs.
func TestInterruptDuringGC(t *testing.T) {
	if os.Getenv("WISP_INTERRUPT_GC_CHILD") != "1" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestInterruptDuringGC$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "WISP_INTERRUPT_GC_CHILD=1")
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("the child process hung: a spinning guest blocked the garbage collector\n%s", out)
		}
		if err != nil {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}

	ctx := context.Background()
	rt := plainRuntime(t)
	out, err := InstrumentInterrupt(loopModule().bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mod := instantiate(t, ctx, rt, out)
		flag := interruptFlag(t, mod)
		done := make(chan error, 1)
		go func() {
			_, err := mod.ExportedFunction("spin").Call(ctx)
			done <- err
		}()
		time.Sleep(20 * time.Millisecond) // the guest spins
		for range 5 {
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
		flag.Set(1)
		if err := <-done; err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("round %d: spin: got error %v; want wasm error: unreachable", i, err)
		}
		mod.Close(ctx)
	}
}

// BenchmarkInterruptLoop measures a tight loop (countdown) bare, with the
// interrupt check, and with wazero's WithCloseOnContextDone, which leaves
// native code at every iteration. TestInstrumentInterrupt is its
// correctness twin.
func BenchmarkInterruptLoop(b *testing.B) {
	const iterations = 1 << 20
	ctx := context.Background()
	closing := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	defer closing.Close(ctx)
	orig := loopModule().bytes()
	out, err := InstrumentInterrupt(orig)
	if err != nil {
		b.Fatal(err)
	}
	tests := []struct {
		name string
		rt   wazero.Runtime
		wasm []byte
	}{
		{"none", plainRuntime(b), orig},
		{"check", plainRuntime(b), out},
		{"close-on-context-done", closing, orig},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			mod, err := tt.rt.InstantiateWithConfig(ctx, tt.wasm, wazero.NewModuleConfig().WithName(""))
			if err != nil {
				b.Fatal(err)
			}
			defer mod.Close(ctx)
			countdown := mod.ExportedFunction("countdown")
			b.ReportAllocs()
			for b.Loop() {
				if res, err := countdown.Call(ctx, iterations); err != nil || res[0] != 0 {
					b.Fatalf("countdown(%d) = %v, %v; want 0", iterations, res, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/iterations, "ns/iteration")
		})
	}
}
