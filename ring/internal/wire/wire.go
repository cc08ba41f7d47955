// Package wire reads and writes the payloads of hostcalls (docs/hostcalls.md): little-endian
// fixed-size integers, and strs (a u32 length, then that many bytes).
//
// A Decoder never panics on malformed input: it records the first problem, returns zero values
// from then on, and Err reports it with the field and offset that were wrong.
package wire

import (
	"errors"
	"strconv"
)

// ErrMalformed is wrapped by every error a Decoder reports.
var ErrMalformed = errors.New("malformed hostcall payload")

// AppendU8 appends v.
func AppendU8(dst []byte, v uint8) []byte { return append(dst, v) }

// AppendU32 appends v, little-endian.
func AppendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// AppendU64 appends v, little-endian.
func AppendU64(dst []byte, v uint64) []byte {
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24),
		byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

// AppendStr appends s as a str. Callers keep s under 4 GiB (payload limits are far below).
func AppendStr(dst []byte, s string) []byte {
	return append(AppendU32(dst, uint32(len(s))), s...)
}

// AppendBytes appends b as a str.
func AppendBytes(dst []byte, b []byte) []byte {
	return append(AppendU32(dst, uint32(len(b))), b...)
}

// PutU32 writes v little-endian into b[0:4].
func PutU32(b []byte, v uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// Decoder reads fields from a payload in order.
type Decoder struct {
	b   []byte
	off int
	err error
}

// NewDecoder returns a Decoder reading b. Slices it returns alias b.
func NewDecoder(b []byte) Decoder { return Decoder{b: b} }

// Err returns the first problem met, or nil.
func (d *Decoder) Err() error { return d.err }

// U8 reads one byte.
func (d *Decoder) U8(field string) uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 1 {
		d.fail(field+" truncated", d.off)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

// U32 reads a little-endian u32.
func (d *Decoder) U32(field string) uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 4 {
		d.fail(field+" truncated", d.off)
		return 0
	}
	b := d.b[d.off : d.off+4]
	d.off += 4
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// U64 reads a little-endian u64.
func (d *Decoder) U64(field string) uint64 {
	lo := d.U32(field)
	hi := d.U32(field)
	return uint64(hi)<<32 | uint64(lo)
}

// Bytes reads a str and returns it aliasing the payload, capacity clipped.
func (d *Decoder) Bytes(field string) []byte {
	if d.err != nil {
		return nil
	}
	start := d.off
	n := d.U32(field + " length")
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)-d.off) {
		d.fail(field+" length "+strconv.FormatUint(uint64(n), 10)+" past the end of "+
			strconv.Itoa(len(d.b))+" bytes", start)
		return nil
	}
	end := d.off + int(n)
	s := d.b[d.off:end:end]
	d.off = end
	return s
}

// Str reads a str as a string (a copy).
func (d *Decoder) Str(field string) string { return string(d.Bytes(field)) }

// Count reads a u32 count of entries that take at least minSize bytes each, refusing counts that
// cannot fit in what is left, so a caller may size a slice by it.
func (d *Decoder) Count(field string, minSize int) int {
	start := d.off
	n := d.U32(field)
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64((len(d.b)-d.off)/minSize) {
		d.fail(field+" "+strconv.FormatUint(uint64(n), 10)+" past the end of "+
			strconv.Itoa(len(d.b))+" bytes", start)
		return 0
	}
	return int(n)
}

// End records an error if bytes are left over, and returns Err.
func (d *Decoder) End() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail(strconv.Itoa(len(d.b)-d.off)+" trailing bytes", d.off)
	}
	return d.err
}

// Fail records a problem found by the caller (a value out of range) at the current offset,
// unless one is recorded already.
func (d *Decoder) Fail(what string) {
	if d.err == nil {
		d.fail(what, d.off)
	}
}

func (d *Decoder) fail(what string, off int) {
	d.err = &malformedError{what: what, off: off}
}

type malformedError struct {
	what string
	off  int
}

func (e *malformedError) Error() string {
	return ErrMalformed.Error() + ": " + e.what + " at offset " + strconv.Itoa(e.off)
}

func (e *malformedError) Unwrap() error { return ErrMalformed }
