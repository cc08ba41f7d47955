package hostcall

import (
	"errors"

	"github.com/wispfn/wisp/sdk/go/internal/abi"
)

// Encoding helpers, re-exported so the faas packages need one import.
var (
	AppendU32    = abi.AppendU32
	AppendString = abi.AppendString
	AppendBytes  = abi.AppendBytes
)

// AppendU8 appends v.
func AppendU8(dst []byte, v uint8) []byte { return append(dst, v) }

// AppendU64 appends v, little-endian.
func AppendU64(dst []byte, v uint64) []byte {
	return abi.AppendU32(abi.AppendU32(dst, uint32(v)), uint32(v>>32))
}

// ErrMalformed is returned when a result from the host does not decode: a host bug.
var ErrMalformed = errors.New("wisp: malformed hostcall result")

// Decoder reads a result from the host; after the first problem every read returns zero values
// and Err returns ErrMalformed.
type Decoder struct {
	b   []byte
	off int
	bad bool
}

// NewDecoder returns a Decoder reading b; byte slices it returns alias b.
func NewDecoder(b []byte) Decoder { return Decoder{b: b} }

// U8 reads a byte.
func (d *Decoder) U8() uint8 {
	if d.bad || len(d.b)-d.off < 1 {
		d.bad = true
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

// U32 reads a little-endian u32.
func (d *Decoder) U32() uint32 {
	if d.bad || len(d.b)-d.off < 4 {
		d.bad = true
		return 0
	}
	b := d.b[d.off : d.off+4]
	d.off += 4
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// Bytes reads a str, aliasing the result, capacity clipped.
func (d *Decoder) Bytes() []byte {
	n := d.U32()
	if d.bad || uint64(n) > uint64(len(d.b)-d.off) {
		d.bad = true
		return nil
	}
	end := d.off + int(n)
	s := d.b[d.off:end:end]
	d.off = end
	return s
}

// Str reads a str as a string.
func (d *Decoder) Str() string { return string(d.Bytes()) }

// Count reads a count of entries of at least minSize bytes each; a count that cannot fit is a
// problem.
func (d *Decoder) Count(minSize int) int {
	n := d.U32()
	if d.bad || uint64(n) > uint64((len(d.b)-d.off)/minSize) {
		d.bad = true
		return 0
	}
	return int(n)
}

// Err returns ErrMalformed if a read failed or bytes are left over, else nil.
func (d *Decoder) Err() error {
	if d.bad || d.off != len(d.b) {
		return ErrMalformed
	}
	return nil
}
