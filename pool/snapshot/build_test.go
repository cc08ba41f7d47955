package snapshot

import (
	"encoding/binary"
	"math"
)

// testModule assembles small modules for the tests. Entries are encoded by
// hand, with the helpers below.
type testModule struct {
	types     [][]byte // function types, encoded
	imports   [][]byte // import entries
	funcs     []testFunc
	tables    [][]byte // table types
	memories  [][]byte // memory types (limits)
	globals   [][]byte // global entries: type, mutability, init expression
	exports   [][]byte // export entries
	start     int      // function index + 1, 0 for none
	elements  [][]byte // element segments
	dataCount bool
	data      [][]byte // data segments
	custom    [][]byte // custom sections' payloads, appended at the end
}

type testFunc struct {
	typ  uint32
	code []byte // instructions, the final end included; no locals
}

func (m *testModule) bytes() []byte {
	out := append([]byte(nil), wasmHeader...)
	vec := func(id byte, items [][]byte) {
		if items == nil {
			return
		}
		p := appendU32(nil, uint32(len(items)))
		for _, it := range items {
			p = append(p, it...)
		}
		out = appendSection(out, id, p)
	}
	vec(secType, m.types)
	vec(secImport, m.imports)
	if m.funcs != nil {
		var idx [][]byte
		for _, f := range m.funcs {
			idx = append(idx, appendU32(nil, f.typ))
		}
		vec(secFunction, idx)
	}
	vec(secTable, m.tables)
	vec(secMemory, m.memories)
	vec(secGlobal, m.globals)
	vec(secExport, m.exports)
	if m.start > 0 {
		out = appendSection(out, secStart, appendU32(nil, uint32(m.start-1)))
	}
	vec(secElement, m.elements)
	if m.dataCount {
		out = appendSection(out, secDataCount, appendU32(nil, uint32(len(m.data))))
	}
	if m.funcs != nil {
		var bodies [][]byte
		for _, f := range m.funcs {
			body := append([]byte{0}, f.code...) // no locals
			bodies = append(bodies, append(appendU32(nil, uint32(len(body))), body...))
		}
		vec(secCode, bodies)
	}
	vec(secData, m.data)
	for _, c := range m.custom {
		out = appendSection(out, secCustom, c)
	}
	return out
}

func funcType(params, results []byte) []byte {
	t := append([]byte{0x60}, appendU32(nil, uint32(len(params)))...)
	t = append(t, params...)
	t = append(t, appendU32(nil, uint32(len(results)))...)
	return append(t, results...)
}

func exportEntry(name string, kind byte, index uint32) []byte {
	return appendU32(append(appendName(nil, name), kind), index)
}

func importEntry(module, name string, desc ...byte) []byte {
	return append(appendName(appendName(nil, module), name), desc...)
}

func globalEntry(typ byte, mutable bool, init ...byte) []byte {
	mut := byte(0)
	if mutable {
		mut = 1
	}
	return append([]byte{typ, mut}, init...)
}

func limits(min uint32, max ...uint32) []byte {
	if len(max) == 0 {
		return appendU32([]byte{0}, min)
	}
	return appendU32(appendU32([]byte{limitsHasMax}, min), max[0])
}

// Instructions.

func i32c(v int32) []byte { return appendS64([]byte{opI32Const}, int64(v)) }
func i64c(v int64) []byte { return appendS64([]byte{opI64Const}, v) }
func f32c(v float32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{opF32Const}, math.Float32bits(v))
}
func f64c(v float64) []byte {
	return binary.LittleEndian.AppendUint64([]byte{opF64Const}, math.Float64bits(v))
}
func globalGet(i uint32) []byte { return appendU32([]byte{0x23}, i) }
func globalSet(i uint32) []byte { return appendU32([]byte{0x24}, i) }
func localGet(i uint32) []byte  { return appendU32([]byte{0x20}, i) }

// code concatenates instructions.
func code(instrs ...[]byte) []byte {
	var c []byte
	for _, in := range instrs {
		c = append(c, in...)
	}
	return c
}

var (
	end        = []byte{opEnd}
	i32Add     = []byte{0x6a}
	i32Mul     = []byte{0x6c}
	i32Load    = []byte{0x28, 2, 0}
	i32Store   = []byte{0x36, 2, 0}
	memSize    = []byte{0x3f, 0}
	memGrow    = []byte{0x40, 0}
	drop       = []byte{0x1a}
	unreach    = []byte{0x00}
	typeNone   = []byte{}
	resultI32  = []byte{typeI32}
	resultI64  = []byte{typeI64}
	resultF32  = []byte{typeF32}
	resultF64  = []byte{typeF64}
	paramI32   = []byte{typeI32}
	typeFuncRf = byte(0x70)
)

// Functions of stateModule, by index.
const (
	fnInit = iota
	fnStart
	fnGetG0
	fnGetG1
	fnGetG2
	fnGetG3
	fnLoad
	fnSize
	fnGetG4
)

// stateModule returns a module with state of every capturable kind, built
// at instantiation and by _initialize:
//
//	memory: min 1, max 4; data "hello" at 16
//	g0 mut i32 = 7, g1 mut i64 = 1, g2 mut f32 = 0.5, g3 mut f64 = 0.25,
//	g4 i32 = 42 (immutable), g5 funcref = ref.null (immutable)
//	start: g0 += 1
//	_initialize: g0 *= 100; g1 = -5e12; g2 = 3.25; g3 = -1e300;
//	             grow memory by 1; store 0x11223344 at 70000
func stateModule() *testModule {
	return &testModule{
		types: [][]byte{
			funcType(typeNone, typeNone),
			funcType(typeNone, resultI32),
			funcType(typeNone, resultI64),
			funcType(typeNone, resultF32),
			funcType(typeNone, resultF64),
			funcType(paramI32, resultI32),
		},
		funcs: []testFunc{
			fnInit: {0, code(
				globalGet(0), i32c(100), i32Mul, globalSet(0),
				i64c(-5e12), globalSet(1),
				f32c(3.25), globalSet(2),
				f64c(-1e300), globalSet(3),
				i32c(1), memGrow, drop,
				i32c(70000), i32c(0x11223344), i32Store,
				end)},
			fnStart: {0, code(globalGet(0), i32c(1), i32Add, globalSet(0), end)},
			fnGetG0: {1, code(globalGet(0), end)},
			fnGetG1: {2, code(globalGet(1), end)},
			fnGetG2: {3, code(globalGet(2), end)},
			fnGetG3: {4, code(globalGet(3), end)},
			fnLoad:  {5, code(localGet(0), i32Load, end)},
			fnSize:  {1, code(memSize, end)},
			fnGetG4: {1, code(globalGet(4), end)},
		},
		memories: [][]byte{limits(1, 4)},
		globals: [][]byte{
			globalEntry(typeI32, true, code(i32c(7), end)...),
			globalEntry(typeI64, true, code(i64c(1), end)...),
			globalEntry(typeF32, true, code(f32c(0.5), end)...),
			globalEntry(typeF64, true, code(f64c(0.25), end)...),
			globalEntry(typeI32, false, code(i32c(42), end)...),
			globalEntry(typeFuncRf, false, 0xd0, 0x70, opEnd),
		},
		exports: [][]byte{
			exportEntry(ExportInitialize, externFunc, fnInit),
			exportEntry("g0", externFunc, fnGetG0),
			exportEntry("g1", externFunc, fnGetG1),
			exportEntry("g2", externFunc, fnGetG2),
			exportEntry("g3", externFunc, fnGetG3),
			exportEntry("g4", externFunc, fnGetG4),
			exportEntry("load", externFunc, fnLoad),
			exportEntry("size", externFunc, fnSize),
			exportEntry("memory", externMemory, 0),
		},
		start:  fnStart + 1,
		data:   [][]byte{append([]byte{0, opI32Const, 16, opEnd, 5}, "hello"...)},
		custom: [][]byte{append(appendName(nil, "test.custom"), "kept as is"...)},
	}
}
