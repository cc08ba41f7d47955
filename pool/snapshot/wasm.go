package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Section ids of the WebAssembly binary format.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionRank orders the non-custom sections as the binary format requires
// (the tag section sits between memory and global).
var sectionRank = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12,
	secData: 13,
}

// Export kinds.
const (
	externFunc   = 0
	externTable  = 1
	externMemory = 2
	externGlobal = 3
	externTag    = 4
)

// Value types.
const (
	typeI32       = 0x7f
	typeI64       = 0x7e
	typeF32       = 0x7d
	typeF64       = 0x7c
	typeV128      = 0x7b
	typeRef       = 0x64 // (ref ht), followed by a heap type
	typeRefNull   = 0x63 // (ref null ht), followed by a heap type
	limitsHasMax  = 0x01
	limitsShared  = 0x02
	limitsMem64   = 0x04
	wasmPageBytes = 64 << 10
)

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// errTruncated reports input that ends in the middle of a construct.
var errTruncated = errors.New("unexpected end of input")

// section is one section of a module: its id and where its payload is.
type section struct {
	id         byte
	start, end int // header (id byte) starts at start; payload is wasm[payload:end]
	payload    int
}

// global is a defined global: its type and its initializer, end opcode included.
type global struct {
	valType byte // one of the type* constants; a reference type is reported as typeRef
	mutable bool
	typ     []byte // the global type as encoded: value type and mutability
	init    []byte
}

// export is one entry of the export section.
type export struct {
	name  string
	kind  byte
	index uint32
}

// memory is the limits of the module's one memory.
type memory struct {
	flags    byte
	min, max uint64
	imported bool
}

// module is the outline of a binary: its sections, and the contents of the
// few sections the snapshot reads or rewrites. Everything else is kept as bytes.
type module struct {
	wasm     []byte
	sections []section

	importedFuncs   uint32
	importedGlobals []global // init is nil
	globals         []global
	memories        []memory // imported ones first
	exports         []export
	code            []byte // payload of the code section
}

// parse reads the outline of a WebAssembly binary. It checks the structure of
// the sections it reads and that every section lies within the input; it is
// no validator: wazero's CompileModule is.
func parse(wasm []byte) (*module, error) {
	if len(wasm) < len(wasmHeader) || !bytes.Equal(wasm[:4], wasmHeader[:4]) {
		return nil, errors.New("not a WebAssembly binary: missing \\0asm magic")
	}
	if !bytes.Equal(wasm[4:8], wasmHeader[4:]) {
		return nil, fmt.Errorf("unsupported WebAssembly binary version %x", wasm[4:8])
	}
	m := &module{wasm: wasm}
	r := reader{b: wasm, off: len(wasmHeader)}
	lastRank := 0
	for r.off < len(r.b) {
		start := r.off
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			return nil, fmt.Errorf("cannot read section header at offset %d: %w", start, r.err)
		}
		if uint64(size) > uint64(len(r.b)-r.off) {
			return nil, fmt.Errorf("section %d at offset %d: %d bytes long, only %d left: %w", id, start, size, len(r.b)-r.off, errTruncated)
		}
		s := section{id: id, start: start, payload: r.off, end: r.off + int(size)}
		if id != secCustom {
			if int(id) >= len(sectionRank) || sectionRank[id] == 0 {
				return nil, fmt.Errorf("unknown section id %d at offset %d", id, start)
			}
			if sectionRank[id] <= lastRank {
				return nil, fmt.Errorf("section %d at offset %d is duplicated or out of order", id, start)
			}
			lastRank = sectionRank[id]
		}
		if err := m.readSection(s); err != nil {
			return nil, fmt.Errorf("section %d at offset %d: %w", id, start, err)
		}
		m.sections = append(m.sections, s)
		r.off = s.end
	}
	return m, nil
}

func (m *module) readSection(s section) error {
	r := reader{b: m.wasm[:s.end], off: s.payload}
	switch s.id {
	case secCustom:
		r.name()
		return r.err
	case secImport:
		m.readImports(&r)
	case secMemory:
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			m.memories = append(m.memories, r.limits())
		}
	case secGlobal:
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			start := r.off
			g := r.globalType()
			g.typ = m.wasm[start:r.off]
			start = r.off
			if r.err == nil {
				r.err = skipConstExpr(&r)
			}
			g.init = m.wasm[start:r.off]
			m.globals = append(m.globals, g)
		}
	case secExport:
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			e := export{name: r.name(), kind: r.byte(), index: r.u32()}
			m.exports = append(m.exports, e)
		}
	case secStart, secDataCount:
		r.u32()
	case secData:
		return nil // dropped by the rewrite, never read
	case secCode:
		m.code = m.wasm[s.payload:s.end]
		return nil // read by scanCode
	default:
		return nil // kept as bytes
	}
	if r.err != nil {
		return r.err
	}
	if r.off != s.end {
		return fmt.Errorf("%d bytes left over at the end of the section", s.end-r.off)
	}
	return nil
}

func (m *module) readImports(r *reader) {
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.name() // module
		r.name() // field
		switch kind := r.byte(); kind {
		case externFunc:
			r.u32()
			m.importedFuncs++
		case externTable:
			r.valType()
			r.limits()
		case externMemory:
			mem := r.limits()
			mem.imported = true
			m.memories = append(m.memories, mem)
		case externGlobal:
			m.importedGlobals = append(m.importedGlobals, r.globalType())
		case externTag:
			r.byte() // attribute
			r.u32()  // type index
		default:
			if r.err == nil {
				r.err = fmt.Errorf("unknown import kind %d", kind)
			}
		}
	}
}

// exportIndex returns the position in m.exports of the export named name of
// kind kind, or -1.
func (m *module) exportIndex(name string, kind byte) int {
	for i, e := range m.exports {
		if e.name == name && e.kind == kind {
			return i
		}
	}
	return -1
}

// reader decodes the binary format. The first error sticks: later reads
// return zero values, so a decoding sequence checks r.err once at its end.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(errTruncated)
		return 0
	}
	b := r.b[r.off]
	r.off++
	return b
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail(errTruncated)
		return nil
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

// uleb reads an unsigned LEB128 number of at most bits bits.
func (r *reader) uleb(bits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		b := r.byte()
		if r.err != nil {
			return 0
		}
		if shift >= bits || (bits-shift < 7 && b&0x7f>>(bits-shift) != 0) {
			r.fail(fmt.Errorf("integer at offset %d is too long for %d bits", r.off-1, bits))
			return 0
		}
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return v
		}
	}
}

// sleb reads a signed LEB128 number of at most bits bits.
func (r *reader) sleb(bits uint) int64 {
	var v int64
	for shift := uint(0); ; shift += 7 {
		b := r.byte()
		if r.err != nil {
			return 0
		}
		if shift >= bits {
			r.fail(fmt.Errorf("integer at offset %d is too long for %d bits", r.off-1, bits))
			return 0
		}
		v |= int64(b&0x7f) << shift
		if b&0x80 == 0 {
			if shift+7 < 64 && b&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v
		}
	}
}

func (r *reader) u32() uint32 { return uint32(r.uleb(32)) }

func (r *reader) name() string {
	b := r.bytes(uint64(r.u32()))
	if r.err == nil && !utf8.Valid(b) {
		r.fail(fmt.Errorf("name at offset %d is not UTF-8", r.off-len(b)))
	}
	return string(b)
}

// valType reads a value type and returns it, with every reference type
// reported as typeRef.
func (r *reader) valType() byte {
	t := r.byte()
	switch t {
	case typeI32, typeI64, typeF32, typeF64, typeV128:
		return t
	case typeRef, typeRefNull:
		r.sleb(33) // heap type
		return typeRef
	}
	if t >= 0x69 && t <= 0x74 { // abstract reference types: funcref, externref, exnref, anyref...
		return typeRef
	}
	if r.err == nil {
		r.fail(fmt.Errorf("unknown value type 0x%02x at offset %d", t, r.off-1))
	}
	return 0
}

func (r *reader) globalType() global {
	g := global{valType: r.valType()}
	switch mut := r.byte(); mut {
	case 0:
	case 1:
		g.mutable = true
	default:
		r.fail(fmt.Errorf("invalid global mutability %d", mut))
	}
	return g
}

func (r *reader) limits() memory {
	mem := memory{flags: r.byte()}
	if mem.flags&^(limitsHasMax|limitsShared|limitsMem64) != 0 {
		r.fail(fmt.Errorf("invalid limits flags 0x%02x", mem.flags))
	}
	bits := uint(32)
	if mem.flags&limitsMem64 != 0 {
		bits = 64
	}
	mem.min = r.uleb(bits)
	if mem.flags&limitsHasMax != 0 {
		mem.max = r.uleb(bits)
	}
	return mem
}

// appendU32 appends v in unsigned LEB128.
func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendS64 appends v in signed LEB128.
func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

// appendSection appends a section with the given id and payload.
func appendSection(b []byte, id byte, payload []byte) []byte {
	b = append(b, id)
	b = appendU32(b, uint32(len(payload)))
	return append(b, payload...)
}
