package snapshot

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Exports the host calls once to initialize a guest (docs/abi.md). A rewritten
// module no longer has them: its state is already initialized.
const (
	ExportInitialize = "_initialize"
	ExportStart      = "wisp_start"
)

// reservedPrefix starts the names under which the instrumented module exports
// its memory and globals. A module's own exports must not use it.
const reservedPrefix = "wisp.snapshot."

const memoryExport = reservedPrefix + "memory"

func globalExport(index uint32) string {
	return reservedPrefix + "global." + strconv.FormatUint(uint64(index), 10)
}

// check refuses modules whose state a snapshot cannot capture, or that it
// could not restore exactly. Errors wrap ErrUnsupported.
func (m *module) check() error {
	if len(m.memories) > 1 {
		return fmt.Errorf("module has %d memories, a snapshot handles one: %w", len(m.memories), ErrUnsupported)
	}
	if len(m.memories) == 1 {
		mem := m.memories[0]
		switch {
		case mem.imported:
			return fmt.Errorf("module imports its memory, a snapshot needs it defined in the module: %w", ErrUnsupported)
		case mem.flags&limitsShared != 0:
			return fmt.Errorf("module has a shared memory: %w", ErrUnsupported)
		case mem.flags&limitsMem64 != 0:
			return fmt.Errorf("module has a 64-bit memory: %w", ErrUnsupported)
		}
	}
	for i, g := range m.importedGlobals {
		if g.mutable {
			return fmt.Errorf("module imports mutable global %d, whose state lives outside the module: %w", i, ErrUnsupported)
		}
	}
	for i, g := range m.globals {
		if g.mutable && g.valType != typeI32 && g.valType != typeI64 && g.valType != typeF32 && g.valType != typeF64 {
			return fmt.Errorf("global %d is a mutable %s, a snapshot captures i32, i64, f32 and f64 globals: %w",
				len(m.importedGlobals)+i, typeName(g.valType), ErrUnsupported)
		}
	}
	for _, e := range m.exports {
		if strings.HasPrefix(e.name, reservedPrefix) {
			return fmt.Errorf("module exports %q, a name reserved for snapshots (prefix %q): %w", e.name, reservedPrefix, ErrUnsupported)
		}
	}
	return scanCode(m.code, m.importedFuncs)
}

func typeName(t byte) string {
	switch t {
	case typeI32:
		return "i32"
	case typeI64:
		return "i64"
	case typeF32:
		return "f32"
	case typeF64:
		return "f64"
	case typeV128:
		return "v128"
	}
	return "reference"
}

// instrument returns the module with its memory and each mutable defined
// global also exported under a reserved name, so that the host can read them.
func (m *module) instrument() []byte {
	var payload []byte
	n := uint32(len(m.exports))
	if len(m.memories) == 1 {
		payload = appendName(payload, memoryExport)
		payload = append(payload, externMemory)
		payload = appendU32(payload, 0)
		n++
	}
	for i, g := range m.globals {
		if !g.mutable {
			continue
		}
		index := uint32(len(m.importedGlobals) + i)
		payload = appendName(payload, globalExport(index))
		payload = append(payload, externGlobal)
		payload = appendU32(payload, index)
		n++
	}

	out := make([]byte, 0, len(m.wasm)+len(payload)+16)
	out = append(out, wasmHeader...)
	done := false
	emit := func() {
		old := m.exportPayload()
		body := appendU32(make([]byte, 0, len(old)+len(payload)+5), n)
		body = append(body, old...)
		body = append(body, payload...)
		out = appendSection(out, secExport, body)
		done = true
	}
	for _, s := range m.sections {
		if !done && s.id != secCustom && sectionRank[s.id] >= sectionRank[secExport] {
			emit()
			if s.id == secExport {
				continue
			}
		}
		out = append(out, m.wasm[s.start:s.end]...)
	}
	if !done {
		emit()
	}
	return out
}

// exportPayload returns the entries of the export section, without their count.
func (m *module) exportPayload() []byte {
	for _, s := range m.sections {
		if s.id == secExport {
			r := reader{b: m.wasm[:s.end], off: s.payload}
			r.u32()
			return m.wasm[r.off:s.end]
		}
	}
	return nil
}

// Rewrite returns wasm as a module whose initial state is a snapshot: each
// mutable defined global starts at its value in globals, the memory starts
// with memPages pages (its maximum unchanged), and everything that
// initialized the state at instantiation is gone: the data segments (and the
// data count section), the start function, and the ExportInitialize and
// ExportStart exports, which must not run again on a snapshot. Every other
// section, custom ones included, is copied unchanged.
//
// globals holds one value per defined global (imported ones excluded), in
// index order, as wazero's api.Global.Get reports it; the values of immutable
// globals are ignored, they keep their initializer. The memory's contents
// are not part of the module: an instance of it must be given the snapshot
// image (see pool/cowmem).
//
// Rewrite refuses, with an error wrapping ErrUnsupported, a module whose
// state cannot be captured this way (see Take).
func Rewrite(wasm []byte, globals []uint64, memPages uint32) ([]byte, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, fmt.Errorf("cannot parse module: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("cannot snapshot module: %w", err)
	}
	return m.rewrite(globals, memPages)
}

func (m *module) rewrite(globals []uint64, memPages uint32) ([]byte, error) {
	if len(globals) != len(m.globals) {
		return nil, fmt.Errorf("cannot rewrite module: got %d global values, the module defines %d globals", len(globals), len(m.globals))
	}
	if len(m.memories) == 0 && memPages != 0 {
		return nil, fmt.Errorf("cannot rewrite module: got %d memory pages, the module has no memory", memPages)
	}
	if len(m.memories) == 1 {
		mem := m.memories[0]
		if memPages > 1<<16 || (mem.flags&limitsHasMax != 0 && uint64(memPages) > mem.max) {
			return nil, fmt.Errorf("cannot rewrite module: %d memory pages exceed the memory's maximum %d", memPages, mem.max)
		}
	}

	out := make([]byte, 0, len(m.wasm))
	out = append(out, wasmHeader...)
	for _, s := range m.sections {
		switch s.id {
		case secGlobal:
			out = appendSection(out, secGlobal, m.globalPayload(globals))
		case secMemory:
			mem := m.memories[0]
			p := []byte{1, mem.flags}
			p = appendU32(p, memPages)
			if mem.flags&limitsHasMax != 0 {
				p = appendU32(p, uint32(mem.max))
			}
			out = appendSection(out, secMemory, p)
		case secExport:
			var p []byte
			n := uint32(0)
			for _, e := range m.exports {
				if e.kind == externFunc && (e.name == ExportInitialize || e.name == ExportStart) {
					continue
				}
				p = appendName(p, e.name)
				p = append(p, e.kind)
				p = appendU32(p, e.index)
				n++
			}
			out = appendSection(out, secExport, append(appendU32(nil, n), p...))
		case secStart, secData, secDataCount:
		default:
			out = append(out, m.wasm[s.start:s.end]...)
		}
	}
	return out, nil
}

// globalPayload returns the global section with each mutable global
// initialized to its value in values.
func (m *module) globalPayload(values []uint64) []byte {
	p := appendU32(nil, uint32(len(m.globals)))
	for i, g := range m.globals {
		if !g.mutable {
			p = append(p, g.typ...)
			p = append(p, g.init...)
			continue
		}
		p = append(p, g.valType, 1)
		v := values[i]
		switch g.valType {
		case typeI32:
			p = appendS64(append(p, opI32Const), int64(int32(uint32(v))))
		case typeI64:
			p = appendS64(append(p, opI64Const), int64(v))
		case typeF32:
			p = binary.LittleEndian.AppendUint32(append(p, opF32Const), uint32(v))
		case typeF64:
			p = binary.LittleEndian.AppendUint64(append(p, opF64Const), v)
		}
		p = append(p, opEnd)
	}
	return p
}
