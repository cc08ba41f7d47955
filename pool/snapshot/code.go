package snapshot

import (
	"fmt"
)

// Opcodes the walker needs by name.
const (
	opBlock       = 0x02
	opLoop        = 0x03
	opIf          = 0x04
	opTry         = 0x06
	opEnd         = 0x0b
	opDelegate    = 0x18
	opTryTable    = 0x1f
	opTableSet    = 0x26
	opI32Const    = 0x41
	opI64Const    = 0x42
	opF32Const    = 0x43
	opF64Const    = 0x44
	prefixMisc    = 0xfc
	prefixSIMD    = 0xfd
	prefixAtomics = 0xfe
)

// Sub-opcodes of prefixMisc that change what a snapshot can capture.
const (
	miscMemoryInit = 8
	miscDataDrop   = 9
	miscTableInit  = 12
	miscTableCopy  = 14
	miscTableGrow  = 15
	miscTableFill  = 17
)

// refused names the instructions a snapshotted module must not contain, and
// why. memory.init and data.drop refer to the data segments the rewrite
// removes; the table instructions change tables, which a snapshot does not
// capture (the restored instance would see the tables as instantiation leaves
// them).
func refused(op byte, sub uint32) string {
	switch {
	case op == opTableSet:
		return "table.set"
	case op != prefixMisc:
		return ""
	case sub == miscMemoryInit:
		return "memory.init"
	case sub == miscDataDrop:
		return "data.drop"
	case sub == miscTableInit:
		return "table.init"
	case sub == miscTableCopy:
		return "table.copy"
	case sub == miscTableGrow:
		return "table.grow"
	case sub == miscTableFill:
		return "table.fill"
	}
	return ""
}

// scanCode walks every function body of the code section and returns an
// error wrapping ErrUnsupported at the first refused instruction, or at an
// instruction it does not know (it cannot tell what follows one).
func scanCode(code []byte, importedFuncs uint32) error {
	if code == nil { // no code section
		return nil
	}
	r := reader{b: code}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		fn := importedFuncs + i
		size := r.u32()
		body := r.bytes(uint64(size))
		if r.err != nil {
			return fmt.Errorf("function %d: %w", fn, r.err)
		}
		br := reader{b: body}
		for groups := br.u32(); groups > 0 && br.err == nil; groups-- {
			br.u32() // count
			br.valType()
		}
		if br.err != nil {
			return fmt.Errorf("function %d: locals: %w", fn, br.err)
		}
		err := walkExpr(&br, func(op byte, sub uint32, at int) error {
			if name := refused(op, sub); name != "" {
				return fmt.Errorf("function %d uses %s (at offset %d of its body): %w", fn, name, at, ErrUnsupported)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if br.off != len(body) {
			return fmt.Errorf("function %d: %d bytes after the end of its body", fn, len(body)-br.off)
		}
	}
	if r.err != nil {
		return r.err
	}
	if r.off != len(code) {
		return fmt.Errorf("code section: %d bytes left over", len(code)-r.off)
	}
	return nil
}

// skipConstExpr moves r past a constant expression, its end included.
func skipConstExpr(r *reader) error {
	return walkExpr(r, nil)
}

// walkExpr reads instructions up to and including the end that closes the
// expression, calling visit (if not nil) with each opcode (and the
// sub-opcode of a prefixed one) and its offset.
func walkExpr(r *reader, visit func(op byte, sub uint32, at int) error) error {
	depth := 0
	for {
		at := r.off
		op := r.byte()
		var sub uint32
		switch op {
		case 0x00, 0x01, 0x05, 0x0a, 0x0f, 0x19, 0x1a, 0x1b, 0xd1, 0xd3, 0xd4:
			// unreachable nop else throw_ref return catch_all drop select
			// ref.is_null ref.eq ref.as_non_null
		case opBlock, opLoop, opIf, opTry:
			r.blockType()
			depth++
		case opTryTable:
			r.blockType()
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				switch kind := r.byte(); kind {
				case 0, 1: // catch, catch_ref: tag, label
					r.u32()
					r.u32()
				case 2, 3: // catch_all, catch_all_ref: label
					r.u32()
				default:
					r.fail(fmt.Errorf("unknown catch kind %d at offset %d", kind, r.off-1))
				}
			}
			depth++
		case opEnd, opDelegate:
			if op == opDelegate {
				r.u32()
			}
			if depth == 0 {
				if op == opDelegate {
					r.fail(fmt.Errorf("delegate outside a try block at offset %d", at))
				}
				return r.err
			}
			depth--
		case 0x07, 0x08, 0x09, 0x0c, 0x0d, 0x10, 0x12, 0x14, 0x15, 0xd2, 0xd5, 0xd6:
			// catch throw rethrow br br_if call return_call call_ref
			// return_call_ref ref.func br_on_null br_on_non_null
			r.u32()
		case 0x0e: // br_table
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				r.u32()
			}
			r.u32()
		case 0x11, 0x13: // call_indirect, return_call_indirect: type, table
			r.u32()
			r.u32()
		case 0x1c: // select t*
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				r.valType()
			}
		case 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, opTableSet:
			// local.get/set/tee global.get/set table.get/set
			r.u32()
		case 0x3f, 0x40: // memory.size, memory.grow
			r.u32()
		case opI32Const:
			r.sleb(32)
		case opI64Const:
			r.sleb(64)
		case opF32Const:
			r.bytes(4)
		case opF64Const:
			r.bytes(8)
		case 0xd0: // ref.null
			r.sleb(33)
		case prefixMisc:
			sub = r.u32()
			r.miscImmediates(sub)
		case prefixSIMD:
			sub = r.u32()
			r.simdImmediates(sub)
		case prefixAtomics:
			sub = r.u32()
			r.atomicImmediates(sub)
		default:
			switch {
			case op >= 0x28 && op <= 0x3e: // loads and stores
				r.memarg()
			case op >= 0x45 && op <= 0xc4: // numeric instructions
			default:
				r.fail(fmt.Errorf("unknown opcode 0x%02x at offset %d: %w", op, at, ErrUnsupported))
			}
		}
		if r.err != nil {
			return r.err
		}
		if visit != nil {
			if err := visit(op, sub, at); err != nil {
				return err
			}
		}
	}
}

// blockType reads a block type: empty (0x40), a value type or a type index.
func (r *reader) blockType() {
	if r.err == nil && r.off < len(r.b) && r.b[r.off] == 0x40 {
		r.off++
		return
	}
	// Read as s33, the one-byte value types are negative: (ref ht) and
	// (ref null ht) are followed by a heap type.
	switch r.sleb(33) {
	case typeRef - 0x80, typeRefNull - 0x80:
		r.sleb(33)
	}
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.uleb(64) // offset
}

func (r *reader) miscImmediates(sub uint32) {
	switch sub {
	case 0, 1, 2, 3, 4, 5, 6, 7: // saturating truncations
	case miscMemoryInit, miscTableInit, miscTableCopy, 10: // two indices (10: memory.copy)
		r.u32()
		r.u32()
	case miscDataDrop, 11, 13, miscTableGrow, 16, miscTableFill:
		// data.drop memory.fill elem.drop table.grow table.size table.fill
		r.u32()
	default:
		r.fail(fmt.Errorf("unknown opcode 0xfc %d: %w", sub, ErrUnsupported))
	}
}

func (r *reader) simdImmediates(sub uint32) {
	switch {
	case sub <= 11, sub == 92, sub == 93: // loads and stores
		r.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load and store lane
		r.memarg()
		r.byte()
	case sub <= 0x113: // everything else, relaxed SIMD included, has no immediate
	default:
		r.fail(fmt.Errorf("unknown opcode 0xfd %d: %w", sub, ErrUnsupported))
	}
}

func (r *reader) atomicImmediates(sub uint32) {
	switch {
	case sub == 3: // atomic.fence
		r.byte()
	case sub <= 2, sub >= 0x10 && sub <= 0x4e:
		r.memarg()
	default:
		r.fail(fmt.Errorf("unknown opcode 0xfe %d: %w", sub, ErrUnsupported))
	}
}
