// Package abi is the guest side of the Wisp request/response encoding described in docs/abi.md:
// it decodes the requests the host writes into guest memory and encodes the responses the host reads.
//
// Everything is little-endian; every length and count is a u32; a str is a u32 length followed by
// that many bytes. Decoding never panics on malformed input: it returns an error that wraps
// ErrMalformed and names the field and offset that were wrong.
package abi

import (
	"errors"
	"strconv"
)

// Version is the request encoding version this package reads and writes.
const Version = 1

// ErrMalformed is wrapped by every error DecodeRequest and DecodeResponse return.
var ErrMalformed = errors.New("malformed wisp message")

// Header is one header entry: one name and one of its values.
type Header struct {
	Name, Value string
}

// Request is a decoded request. Its strings are copies and stay valid for as long as the caller
// keeps them; Body aliases the decoded buffer and is valid only as long as that buffer is.
type Request struct {
	Method     string
	URI        string // path after the route prefix, with "?query"
	FullURI    string // path and query as the client sent them
	Host       string
	RemoteAddr string
	Headers    []Header
	Body       []byte
}

// Response is a response to encode, or a decoded one (then Headers strings are copies and Body
// aliases the decoded buffer).
type Response struct {
	Status  int
	Headers []Header
	Body    []byte
}

// DecodeRequest decodes the request in b into r. It reuses the capacity of r.Headers and makes
// one string allocation for all of the request's strings; r.Body aliases b.
func DecodeRequest(b []byte, r *Request) error {
	// The first pass validates every length without allocating and finds where the body starts;
	// the second copies everything before the body into one string and slices the fields from it.
	d := decoder{b: b}
	if v := d.u32("version"); d.err == nil && v != Version {
		return malformed("unsupported version "+strconv.FormatUint(uint64(v), 10), 0)
	}
	for _, field := range [...]string{"method", "uri", "full_uri", "host", "remote_addr"} {
		d.str(field)
	}
	n := d.count("header_count", 8)
	for i := 0; i < n && d.err == nil; i++ {
		d.str("header name")
		d.str("header value")
	}
	metaEnd := d.off
	body := d.str("body")
	d.end()
	if d.err != nil {
		return d.err
	}

	s := stringDecoder{s: string(b[:metaEnd]), off: 4}
	r.Method = s.str()
	r.URI = s.str()
	r.FullURI = s.str()
	r.Host = s.str()
	r.RemoteAddr = s.str()
	s.off += 4
	r.Headers = r.Headers[:0]
	for range n {
		name := s.str()
		r.Headers = append(r.Headers, Header{Name: name, Value: s.str()})
	}
	r.Body = body
	return nil
}

// AppendRequest appends the encoding of r to dst. It is the inverse of DecodeRequest; the guest
// never sends requests, so it is used by tests and tools.
func AppendRequest(dst []byte, r *Request) []byte {
	dst = AppendU32(dst, Version)
	dst = AppendString(dst, r.Method)
	dst = AppendString(dst, r.URI)
	dst = AppendString(dst, r.FullURI)
	dst = AppendString(dst, r.Host)
	dst = AppendString(dst, r.RemoteAddr)
	dst = AppendU32(dst, uint32(len(r.Headers)))
	for _, h := range r.Headers {
		dst = AppendString(dst, h.Name)
		dst = AppendString(dst, h.Value)
	}
	return AppendBytes(dst, r.Body)
}

// AppendResponse appends the encoding of r to dst.
func AppendResponse(dst []byte, r *Response) []byte {
	dst = AppendU32(dst, uint32(r.Status))
	dst = AppendU32(dst, uint32(len(r.Headers)))
	for _, h := range r.Headers {
		dst = AppendString(dst, h.Name)
		dst = AppendString(dst, h.Value)
	}
	return AppendBytes(dst, r.Body)
}

// DecodeResponse decodes the response in b into r. It accepts status 0 (a guest failure) and
// 100..999, reuses the capacity of r.Headers and copies header strings; r.Body aliases b.
func DecodeResponse(b []byte, r *Response) error {
	d := decoder{b: b}
	status := d.u32("status")
	if d.err == nil && status != 0 && (status < 100 || status > 999) {
		return malformed("status "+strconv.FormatUint(uint64(status), 10)+" out of range", 0)
	}
	n := d.count("header_count", 8)
	r.Headers = r.Headers[:0]
	for i := 0; i < n && d.err == nil; i++ {
		name := d.str("header name")
		value := d.str("header value")
		r.Headers = append(r.Headers, Header{Name: string(name), Value: string(value)})
	}
	body := d.str("body")
	d.end()
	if d.err != nil {
		return d.err
	}
	r.Status = int(status)
	r.Body = body
	return nil
}

// AppendU32 appends v in little-endian order.
func AppendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// PutU32 writes v in little-endian order into b[0:4].
func PutU32(b []byte, v uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// AppendString appends s as a str.
func AppendString(dst []byte, s string) []byte {
	return append(AppendU32(dst, uint32(len(s))), s...)
}

// AppendBytes appends b as a str.
func AppendBytes(dst []byte, b []byte) []byte {
	return append(AppendU32(dst, uint32(len(b))), b...)
}

// decoder reads u32s and strs from b, recording the first error; after an error every read
// returns zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) u32(field string) uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 4 {
		d.err = malformed(field+" truncated", d.off)
		return 0
	}
	b := d.b[d.off : d.off+4]
	d.off += 4
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (d *decoder) str(field string) []byte {
	if d.err != nil {
		return nil
	}
	start := d.off
	if len(d.b)-start < 4 {
		d.err = malformed(field+" length truncated", start)
		return nil
	}
	b := d.b[start : start+4]
	n := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	d.off += 4
	if uint64(n) > uint64(len(d.b)-d.off) {
		d.err = malformed(field+" length "+strconv.FormatUint(uint64(n), 10)+" past end of "+
			strconv.Itoa(len(d.b))+" bytes", start)
		return nil
	}
	end := d.off + int(n)
	s := d.b[d.off:end:end]
	d.off = end
	return s
}

// count reads a count of entries that take at least minSize bytes each, refusing counts that
// cannot fit in what is left.
func (d *decoder) count(field string, minSize int) int {
	start := d.off
	n := d.u32(field)
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64((len(d.b)-d.off)/minSize) {
		d.err = malformed(field+" "+strconv.FormatUint(uint64(n), 10)+" past end of "+
			strconv.Itoa(len(d.b))+" bytes", start)
		return 0
	}
	return int(n)
}

func (d *decoder) end() {
	if d.err == nil && d.off != len(d.b) {
		d.err = malformed(strconv.Itoa(len(d.b)-d.off)+" trailing bytes", d.off)
	}
}

// stringDecoder reads strs from a string that a decoder has already validated.
type stringDecoder struct {
	s   string
	off int
}

func (d *stringDecoder) str() string {
	b := d.s[d.off : d.off+4]
	n := int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	d.off += 4 + n
	return d.s[d.off-n : d.off]
}

func malformed(what string, off int) error {
	return &malformedError{what: what, off: off}
}

type malformedError struct {
	what string
	off  int
}

func (e *malformedError) Error() string {
	return ErrMalformed.Error() + ": " + e.what + " at offset " + strconv.Itoa(e.off)
}

func (e *malformedError) Unwrap() error { return ErrMalformed }
