package ring

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// A tiny guest, assembled by hand, that re-exports the four imports (so tests can call them with
// any arguments) and loops over them (so benchmarks measure the host, not Go-to-wasm calls).

const (
	i32 = 0x7f
	// instructions
	opBlock, opLoop, opEnd, opBr, opBrIf   = 0x02, 0x03, 0x0b, 0x0c, 0x0d
	opCall, opDrop, opLocalGet, opLocalSet = 0x10, 0x1a, 0x20, 0x21
	opI32Const, opI32Eqz, opI32Sub         = 0x41, 0x45, 0x6b
)

func leb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(v int32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func name(s string) []byte { return append(leb(uint32(len(s))), s...) }

func section(id byte, items ...[]byte) []byte {
	body := leb(uint32(len(items)))
	for _, it := range items {
		body = append(body, it...)
	}
	return append(append([]byte{id}, leb(uint32(len(body)))...), body...)
}

func funcType(params, results int) []byte {
	t := append([]byte{0x60}, leb(uint32(params))...)
	for range params {
		t = append(t, i32)
	}
	t = append(t, leb(uint32(results))...)
	for range results {
		t = append(t, i32)
	}
	return t
}

// repeat is a body that runs inner n times, n being parameter 0.
func repeat(inner ...byte) []byte {
	b := []byte{opBlock, 0x40, opLoop, 0x40, opLocalGet, 0, opI32Eqz, opBrIf, 1}
	b = append(b, inner...)
	b = append(b, opLocalGet, 0, opI32Const, 1, opI32Sub, opLocalSet, 0, opBr, 0, opEnd, opEnd, opEnd)
	return b
}

func body(code []byte) []byte {
	b := append([]byte{0}, code...) // no locals
	return append(leb(uint32(len(b))), b...)
}

func i32c(v int32) []byte { return append([]byte{opI32Const}, sleb(v)...) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// Function indexes: imports first.
const (
	fnSubmit, fnPoll, fnWait, fnRead = 0, 1, 2, 3
	echoSlot                         = 1024 // where roundtrip keeps its payload, id, size and result
)

// ringGuest exports memory and submit, poll, wait, read (forwarding to the imports),
// poll_loop(n) (n polls) and roundtrip(n) (n echo round trips: submit, wait, read).
func ringGuest() []byte {
	types := [][]byte{funcType(4, 1), funcType(2, 1), funcType(3, 1), funcType(1, 0)}
	imports := [][]byte{
		cat(name(ModuleName), name("submit"), []byte{0}, leb(0)),
		cat(name(ModuleName), name("poll"), []byte{0}, leb(1)),
		cat(name(ModuleName), name("wait"), []byte{0}, leb(1)),
		cat(name(ModuleName), name("read"), []byte{0}, leb(2)),
	}
	forward := func(n int, fn byte) []byte {
		var b []byte
		for i := range n {
			b = append(b, opLocalGet, byte(i))
		}
		return append(b, opCall, fn, opEnd)
	}
	pollLoop := repeat(cat(i32c(echoSlot), i32c(echoSlot+4), []byte{opCall, fnPoll, opDrop})...)
	roundTrip := repeat(cat(
		i32c(1), i32c(idEcho), i32c(echoSlot+16), i32c(8), []byte{opCall, fnSubmit, opDrop},
		i32c(echoSlot), i32c(echoSlot+4), []byte{opCall, fnWait, opDrop},
		i32c(1), i32c(idEcho), i32c(echoSlot+32), []byte{opCall, fnRead, opDrop},
	)...)
	funcs := [][]byte{leb(0), leb(1), leb(1), leb(2), leb(3), leb(3)}
	exports := [][]byte{
		cat(name("memory"), []byte{2}, leb(0)),
		cat(name("submit"), []byte{0}, leb(4)),
		cat(name("poll"), []byte{0}, leb(5)),
		cat(name("wait"), []byte{0}, leb(6)),
		cat(name("read"), []byte{0}, leb(7)),
		cat(name("poll_loop"), []byte{0}, leb(8)),
		cat(name("roundtrip"), []byte{0}, leb(9)),
	}
	codes := [][]byte{
		body(forward(4, fnSubmit)), body(forward(2, fnPoll)), body(forward(2, fnWait)),
		body(forward(3, fnRead)), body(pollLoop), body(roundTrip),
	}
	return cat([]byte("\x00asm\x01\x00\x00\x00"),
		section(1, types...), section(2, imports...), section(3, funcs...),
		section(5, []byte{0, 1}), // one page, no maximum
		section(7, exports...), section(10, codes...))
}

// floorGuest imports bench.nop and exports loop(n), which calls it n times: the cost of a bare
// wazero host call.
func floorGuest() []byte {
	return cat([]byte("\x00asm\x01\x00\x00\x00"),
		section(1, funcType(0, 0), funcType(1, 0)),
		section(2, cat(name("bench"), name("nop"), []byte{0}, leb(0))),
		section(3, leb(1)),
		section(7, cat(name("loop"), []byte{0}, leb(1))),
		section(10, body(repeat(opCall, 0))))
}

type guestModule struct {
	mod api.Module
	mem api.Memory
}

func newRuntime(tb testing.TB, h *Host) wazero.Runtime {
	tb.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	tb.Cleanup(func() { r.Close(ctx) })
	if err := h.Instantiate(ctx, r); err != nil {
		tb.Fatal(err)
	}
	return r
}

func newGuest(tb testing.TB, r wazero.Runtime) *guestModule {
	tb.Helper()
	mod, err := r.InstantiateWithConfig(context.Background(), ringGuest(), wazero.NewModuleConfig().WithName(""))
	if err != nil {
		tb.Fatal(err)
	}
	return &guestModule{mod: mod, mem: mod.Memory()}
}

func (g *guestModule) call(tb testing.TB, ctx context.Context, fn string, args ...uint32) int32 {
	tb.Helper()
	params := make([]uint64, len(args))
	for i, a := range args {
		params[i] = api.EncodeU32(a)
	}
	res, err := g.mod.ExportedFunction(fn).Call(ctx, params...)
	if err != nil {
		tb.Fatalf("%s%v trapped: %v", fn, args, err)
	}
	if len(res) == 0 {
		return 0
	}
	return api.DecodeI32(res[0])
}

func TestImportsRoundTrip(t *testing.T) {
	h, _ := newHost(t, Limits{})
	g := newGuest(t, newRuntime(t, h))
	in := newInstance(t, h, FunctionConfig{})
	ctx := in.Begin(context.Background())
	defer in.End()
	g.mem.Write(0, []byte("ping"))
	if r := g.call(t, ctx, "submit", 42, idEcho, 0, 4); r < 0 {
		t.Fatalf("submit = %v", Code(-r))
	}
	if r := g.call(t, ctx, "wait", 100, 104); r != 0 {
		t.Fatalf("wait = %d; want 0 (one completion, no more)", r)
	}
	id, _ := g.mem.ReadUint32Le(100)
	size, _ := g.mem.ReadUint32Le(104)
	if id != 42 || size != 8 {
		t.Fatalf("wait wrote id %d size %d; want 42 8", id, size)
	}
	if r := g.call(t, ctx, "read", 42, idEcho, 200); r != 0 {
		t.Fatalf("read = %v", Code(-r))
	}
	if got, _ := g.mem.Read(200, 8); string(got) != "\x00\x00\x00\x00ping" {
		t.Fatalf("read wrote %q; want code 0 and ping", got)
	}
}

// TestImportsBadInput calls every import with pointers outside memory, unknown ids and outside a
// request: each returns a code, none traps, and a refused read leaves the event readable.
func TestImportsBadInput(t *testing.T) {
	h, _ := newHost(t, Limits{})
	g := newGuest(t, newRuntime(t, h))
	in := newInstance(t, h, FunctionConfig{})
	const page = 65536
	if r := g.call(t, context.Background(), "submit", 1, idEcho, 0, 4); r != CodeNoRequest.ret() {
		t.Errorf("submit outside a request = %d; want no-request", r)
	}
	ctx := in.Begin(context.Background())
	defer in.End()
	for _, tc := range []struct {
		fn   string
		args []uint32
		want Code
	}{
		{"submit", []uint32{1, idEcho, page - 2, 4}, CodeBadAddress},
		{"submit", []uint32{1, idEcho, 0xffffffff, 2}, CodeBadAddress},
		{"submit", []uint32{1, idEcho, 0, 0xffffffff}, CodeTooLarge},
		{"submit", []uint32{1, 63, 0, 4}, CodeUnknownProvider},
		{"submit", []uint32{1, 0xffffffff, 0, 4}, CodeUnknownProvider},
		{"poll", []uint32{page - 3, 0}, CodeBadAddress},
		{"poll", []uint32{0, 0xfffffffe}, CodeBadAddress},
		{"poll", []uint32{0, 4}, CodeNotReady},
		{"wait", []uint32{0, 4}, CodeNothingPending},
		{"wait", []uint32{page, 4}, CodeBadAddress},
		{"read", []uint32{9, idEcho, 0}, CodeUnknownEvent},
	} {
		if r := g.call(t, ctx, tc.fn, tc.args...); r != tc.want.ret() {
			t.Errorf("%s%v = %d; want %v", tc.fn, tc.args, r, tc.want)
		}
	}
	g.mem.Write(0, []byte("data"))
	g.call(t, ctx, "submit", 5, idEcho, 0, 4)
	if r := g.call(t, ctx, "wait", page-2, 0); r != CodeBadAddress.ret() {
		t.Errorf("wait with a bad pointer = %d; want bad-address", r)
	}
	if r := g.call(t, ctx, "wait", 16, 20); r < 0 {
		t.Fatalf("wait after a refused wait = %v; want the completion still there", Code(-r))
	}
	if r := g.call(t, ctx, "read", 5, idEcho, page-4); r != CodeBadAddress.ret() {
		t.Errorf("read past the end of memory = %d; want bad-address", r)
	}
	if r := g.call(t, ctx, "read", 5, idEcho, 100); r != 0 {
		t.Errorf("read after a refused read = %v; want the event still readable", Code(-r))
	}
}

// FuzzImports feeds arbitrary calls to the imports, against arbitrary memory, through wazero.
// Nothing may trap, and every call returns a count or a known code.
func FuzzImports(f *testing.F) {
	f.Add([]byte{0, 1, 10, 0, 0, 0, 4, 2, 0, 4, 3, 1, 10, 200})
	f.Add([]byte{0, 0, 10, 255, 255, 255, 255, 1, 0, 0})
	f.Add([]byte{0, 1, 11, 0, 0, 0, 12, 2, 8, 12, 3, 1, 11, 0, 1, 0, 0})
	h, _ := newHost(f, Limits{MaxInFlight: 4, MaxHostcalls: 64})
	r := newRuntime(f, h)
	fn, err := h.NewFunction(FunctionConfig{Name: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		g := newGuest(t, r)
		defer g.mod.Close(context.Background())
		in := fn.NewInstance()
		defer in.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rctx := in.Begin(ctx)
		g.mem.Write(0, script) // the script doubles as memory contents
		arg := func(i *int) uint32 {
			if *i >= len(script) {
				return 0
			}
			b := script[*i]
			*i++
			switch b >> 6 { // small values, addresses near the end of memory, or anything
			case 0, 1:
				return uint32(b)
			case 2:
				return 65536 - uint32(b&0x3f)
			default:
				return 0xffffffff - uint32(b&0x3f)
			}
		}
		for i := 0; i < len(script); {
			op := script[i] % 4
			i++
			var ret int32
			switch op {
			case 0:
				ret = g.call(t, rctx, "submit", arg(&i), arg(&i), arg(&i), arg(&i))
			case 1:
				ret = g.call(t, rctx, "poll", arg(&i), arg(&i))
			case 2:
				if in.pending > 0 && in.cq.Len() == 0 { // never park: the providers may be slow
					continue
				}
				ret = g.call(t, rctx, "wait", arg(&i), arg(&i))
			case 3:
				ret = g.call(t, rctx, "read", arg(&i), arg(&i), arg(&i))
			}
			if ret < 0 && Code(-ret) > CodeClosed {
				t.Fatalf("import returned unknown code %d", ret)
			}
		}
		in.End()
	})
}

func BenchmarkHostcallFloor(b *testing.B) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := r.NewHostModuleBuilder("bench").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), nil, nil).
		Export("nop").Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
	mod, err := r.Instantiate(ctx, floorGuest())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := mod.ExportedFunction("loop").Call(ctx, uint64(b.N)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPollEmpty is a hostcall through the ring's machinery (find the instance, check the
// pointers, look at the completion ring) that finds nothing.
func BenchmarkPollEmpty(b *testing.B) {
	h, _ := newHost(b, Limits{})
	g := newGuest(b, newRuntime(b, h))
	in := newInstance(b, h, FunctionConfig{})
	ctx := in.Begin(context.Background())
	defer in.End()
	g.call(b, ctx, "submit", 1, idEcho, 0, 0) // allocate the instance's rings
	b.ReportAllocs()
	b.ResetTimer()
	g.call(b, ctx, "poll_loop", uint32(b.N))
}

// BenchmarkRoundTripEcho is submit, wait and read from wasm, served by a provider's dispatcher
// goroutine: the ring's guest → host → guest round trip without an SDK.
func BenchmarkRoundTripEcho(b *testing.B) {
	h, _ := newHost(b, Limits{MaxHostcalls: 1 << 30})
	g := newGuest(b, newRuntime(b, h))
	in := newInstance(b, h, FunctionConfig{})
	ctx := in.Begin(context.Background())
	defer in.End()
	g.mem.Write(echoSlot+16, []byte("12345678"))
	g.call(b, ctx, "roundtrip", 1)
	b.ReportAllocs()
	b.ResetTimer()
	g.call(b, ctx, "roundtrip", uint32(b.N))
	b.StopTimer()
	if got, _ := g.mem.Read(echoSlot+32, 12); string(got) != "\x00\x00\x00\x0012345678" {
		b.Fatalf("last round trip read %q", got)
	}
}
