package snapshot

import (
	"fmt"
	"math"
	"strings"
)

// ExportInterrupt is the name under which InstrumentInterrupt exports the
// interrupt flag, a mutable i32 global.
const ExportInterrupt = "wisp_interrupt"

// Opcodes of the interrupt check.
const (
	opUnreachable = 0x00
	opDrop        = 0x1a
	opGlobalGet   = 0x23
	opGlobalSet   = 0x24
	opMemoryGrow  = 0x40
	opI32LeS      = 0x4c
	opI32Sub      = 0x6b
	blockEmpty    = 0x40
)

// checksPerYield is how many interrupt checks a guest runs between two
// exits from native code into Go.
const checksPerYield = 1 << 10

// InstrumentInterrupt returns wasm with an interrupt flag: a new mutable i32
// global, initially 0, exported as ExportInterrupt, and a check at the entry
// of every function and at the start of every loop body. To stop a running
// call, the host sets the flag to 1 with api.MutableGlobal.Set, from another
// goroutine (the guest reads it from native code; the host's own reads and
// writes of it must not race each other). The guest then traps with "wasm
// error: unreachable" within 1,024 checks (checksPerYield), without wazero's
// WithCloseOnContextDone, which leaves native code at every check. The flag
// stays set until the host resets it, so a trap with the flag set is an
// interrupt; the instance is then in the middle of its work and should be
// discarded. A start function runs before the host can reach the flag.
//
// Native code cannot be preempted by the Go scheduler, and a Go garbage
// collection waits until every goroutine reaches a safe point: a guest that
// never left native code would stop the whole process, and with it the
// goroutine meant to set the flag. So the check counts down a second new
// global, not exported, and every 1,024 checks leaves native code
// (memory.grow 0: wazero grows memories in Go), lets the scheduler preempt
// it there, then reads the flag:
//
//	global.get $countdown
//	i32.const 1
//	i32.sub
//	global.set $countdown
//	global.get $countdown
//	i32.const 0
//	i32.le_s
//	if
//	  i32.const 0          ;; i64.const 0 for a 64-bit memory
//	  memory.grow 0
//	  drop
//	  global.get $wisp_interrupt
//	  if
//	    unreachable
//	  end
//	  i32.const 1024
//	  global.set $countdown
//	end
//
// Both globals come after the module's globals, so that existing indices
// keep their meaning. Function bodies grow by the checks and are re-encoded
// with their new sizes; the other sections, custom ones included, are copied
// as they are, except the DWARF sections (".debug_*"), which are dropped
// because they locate instructions by their offset in the code section,
// which the checks shift. The result composes with Take and Rewrite, which
// keep the flag exported.
//
// InstrumentInterrupt refuses, with an error wrapping ErrUnsupported, a
// module that already exports a name ExportInterrupt, has no memory, or has
// an instruction the code scanner does not know; malformed input gets an
// error. wasm is not modified.
func InstrumentInterrupt(wasm []byte) ([]byte, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, fmt.Errorf("cannot parse module: %w", err)
	}
	for _, e := range m.exports {
		if e.name == ExportInterrupt {
			return nil, fmt.Errorf("cannot instrument module for interrupts: it already exports %q: %w", ExportInterrupt, ErrUnsupported)
		}
	}
	if len(m.memories) == 0 {
		return nil, fmt.Errorf("cannot instrument module for interrupts: it has no memory, which the check needs to leave native code: %w", ErrUnsupported)
	}
	// Imported globals come first in the index space: the new globals'
	// indices follow all others, which keep theirs.
	countdown := uint32(len(m.importedGlobals) + len(m.globals))
	flag := countdown + 1
	code, err := checkCode(m.code, m.importedFuncs, interruptCheck(countdown, flag, m.memories[0].flags&limitsMem64 != 0))
	if err != nil {
		return nil, fmt.Errorf("cannot instrument module for interrupts: %w", err)
	}

	globals := appendU32(nil, uint32(len(m.globals)+2))
	globals = append(globals, m.entries(secGlobal)...)
	globals = appendS64(append(globals, typeI32, 1, opI32Const), checksPerYield)
	globals = append(globals, opEnd)
	globals = append(globals, typeI32, 1, opI32Const, 0, opEnd)
	exports := appendU32(nil, uint32(len(m.exports)+1))
	exports = append(exports, m.entries(secExport)...)
	exports = appendName(exports, ExportInterrupt)
	exports = append(exports, externGlobal)
	exports = appendU32(exports, flag)

	// The global and export sections replace the module's, or are inserted
	// where the binary format orders them.
	added := []struct {
		id      byte
		payload []byte
	}{{secGlobal, globals}, {secExport, exports}}
	out := make([]byte, 0, len(wasm)+len(code)-len(m.code)+len(ExportInterrupt)+32)
	out = append(out, wasmHeader...)
	for _, s := range m.sections {
		replaced := false
		for s.id != secCustom && len(added) > 0 && sectionRank[added[0].id] <= sectionRank[s.id] {
			out = appendSection(out, added[0].id, added[0].payload)
			replaced = replaced || added[0].id == s.id
			added = added[1:]
		}
		switch {
		case replaced:
		case s.id == secCode:
			out = appendSection(out, secCode, code)
		case s.id == secCustom && isDWARF(m.wasm[s.payload:s.end]):
		default:
			out = append(out, m.wasm[s.start:s.end]...)
		}
	}
	for _, a := range added {
		out = appendSection(out, a.id, a.payload)
	}
	return out, nil
}

// interruptCheck returns the instructions of the check (see
// InstrumentInterrupt).
func interruptCheck(countdown, flag uint32, mem64 bool) []byte {
	c := appendU32([]byte{opGlobalGet}, countdown)
	c = append(c, opI32Const, 1, opI32Sub, opGlobalSet)
	c = appendU32(c, countdown)
	c = appendU32(append(c, opGlobalGet), countdown)
	c = append(c, opI32Const, 0, opI32LeS, opIf, blockEmpty)
	if mem64 {
		c = append(c, opI64Const, 0)
	} else {
		c = append(c, opI32Const, 0)
	}
	c = append(c, opMemoryGrow, 0, opDrop, opGlobalGet)
	c = appendU32(c, flag)
	c = append(c, opIf, blockEmpty, opUnreachable, opEnd)
	c = appendS64(append(c, opI32Const), checksPerYield)
	c = appendU32(append(c, opGlobalSet), countdown)
	return append(c, opEnd)
}

// checkCode returns the code section payload code with check inserted
// before the first instruction of every function and at the start of every
// loop body.
func checkCode(code []byte, importedFuncs uint32, check []byte) ([]byte, error) {
	if code == nil { // no code section
		return nil, nil
	}
	r := reader{b: code}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(code)+len(code)/8), n)
	var body []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		fn := importedFuncs + i
		src := r.bytes(uint64(r.u32()))
		if r.err != nil {
			return nil, fmt.Errorf("function %d: %w", fn, r.err)
		}
		br := reader{b: src}
		for groups := br.u32(); groups > 0 && br.err == nil; groups-- {
			br.u32() // count
			br.valType()
		}
		if br.err != nil {
			return nil, fmt.Errorf("function %d: locals: %w", fn, br.err)
		}
		body = append(body[:0], src[:br.off]...)
		body = append(body, check...)
		copied := br.off
		err := walkExpr(&br, func(op byte, _ uint32, _ int) error {
			if op == opLoop { // br.off is past the loop's block type
				body = append(body, src[copied:br.off]...)
				body = append(body, check...)
				copied = br.off
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", fn, err)
		}
		if br.off != len(src) {
			return nil, fmt.Errorf("function %d: %d bytes after the end of its body", fn, len(src)-br.off)
		}
		body = append(body, src[copied:]...)
		if uint64(len(body)) > math.MaxUint32 {
			return nil, fmt.Errorf("function %d: %d bytes long with the checks", fn, len(body))
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(code) {
		return nil, fmt.Errorf("code section: %d bytes left over", len(code)-r.off)
	}
	if uint64(len(out)) > math.MaxUint32 {
		return nil, fmt.Errorf("code section: %d bytes long with the checks", len(out))
	}
	return out, nil
}

// entries returns the entries of the section id, without their count, or
// nil if the module has no such section.
func (m *module) entries(id byte) []byte {
	for _, s := range m.sections {
		if s.id == id {
			r := reader{b: m.wasm[:s.end], off: s.payload}
			r.u32()
			return m.wasm[r.off:s.end]
		}
	}
	return nil
}

// isDWARF reports whether a custom section's payload is named ".debug_*".
func isDWARF(payload []byte) bool {
	r := reader{b: payload}
	name := r.name()
	return r.err == nil && strings.HasPrefix(name, ".debug_")
}
