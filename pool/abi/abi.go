// Package abi is the host side of the Wisp guest ABI encoding (docs/abi.md): it encodes the
// requests the host writes into guest memory and decodes the responses the guest returns.
//
// Everything works on byte slices and allocates nothing once the caller's buffers have grown:
// a request can be built straight from the gateway's header bytes, and a decoded response aliases
// the guest memory it was decoded from.
package abi

import (
	"errors"
	"strconv"
)

// Version is the request encoding version this package writes and reads.
const Version = 1

// MaxLen is the longest field the encoding can carry: lengths are u32.
const MaxLen = 1<<32 - 1

// ErrMalformed is wrapped by every error DecodeResponse and DecodeRequest return. A response that
// does not decode is a guest fault.
var ErrMalformed = errors.New("malformed wisp message")

// Header is one header entry: a name and one of its values. A name with several values is
// several entries.
type Header struct {
	Name, Value []byte
}

// Request is a request to encode. The encoder only reads it; every slice stays the caller's.
type Request struct {
	Method     []byte
	URI        []byte // path after the route prefix, with "?query"; starts with "/"
	FullURI    []byte // path and query as the client sent them
	Host       []byte
	RemoteAddr []byte // client "ip:port"
	Headers    []Header
	Body       []byte
}

// Reset empties r, keeping the capacity of Headers for reuse.
func (r *Request) Reset() {
	*r = Request{Headers: r.Headers[:0]}
}

// AddHeader appends one header entry; name and value are not copied.
func (r *Request) AddHeader(name, value []byte) {
	r.Headers = append(r.Headers, Header{Name: name, Value: value})
}

// RequestSize returns the length of the encoding of r.
func RequestSize(r *Request) int {
	n := 4 + 5*4 + len(r.Method) + len(r.URI) + len(r.FullURI) + len(r.Host) + len(r.RemoteAddr) +
		4 + 4 + len(r.Body)
	for _, h := range r.Headers {
		n += 8 + len(h.Name) + len(h.Value)
	}
	return n
}

// AppendRequest appends the encoding of r to dst and returns the extended slice. It does not
// allocate when cap(dst)-len(dst) >= RequestSize(r). It panics if a field is longer than MaxLen
// (the host's request limits are far below that).
func AppendRequest(dst []byte, r *Request) []byte {
	dst = appendU32(dst, Version)
	dst = appendStr(dst, r.Method)
	dst = appendStr(dst, r.URI)
	dst = appendStr(dst, r.FullURI)
	dst = appendStr(dst, r.Host)
	dst = appendStr(dst, r.RemoteAddr)
	dst = appendCount(dst, len(r.Headers))
	for _, h := range r.Headers {
		dst = appendStr(dst, h.Name)
		dst = appendStr(dst, h.Value)
	}
	return appendStr(dst, r.Body)
}

// DecodeRequest decodes the request in b into r, the inverse of AppendRequest (for tools and
// tests that play the guest). r's slices alias b; r.Headers' capacity is reused.
func DecodeRequest(b []byte, r *Request) error {
	d := decoder{b: b}
	if v := d.u32("version"); d.err == nil && v != Version {
		return malformed("unsupported version "+strconv.FormatUint(uint64(v), 10), 0)
	}
	r.Method = d.str("method")
	r.URI = d.str("uri")
	r.FullURI = d.str("full_uri")
	r.Host = d.str("host")
	r.RemoteAddr = d.str("remote_addr")
	r.Headers = d.headers(r.Headers[:0])
	r.Body = d.str("body")
	d.end()
	return d.err
}

// Response is a guest's response. After DecodeResponse, Headers and Body alias the decoded
// buffer (guest memory): they are valid until the next call into the guest.
type Response struct {
	Status  int // 100..999, or 0 for a guest-reported failure with the message in Body
	Headers []Header
	Body    []byte
}

// Reset empties r, keeping the capacity of Headers for reuse.
func (r *Response) Reset() {
	*r = Response{Headers: r.Headers[:0]}
}

// DecodeResponse decodes the response in b into r, reusing the capacity of r.Headers. The status
// must be 0 or 100..999 and b must hold exactly one response; otherwise the error wraps
// ErrMalformed and says what was wrong at which offset, and r holds partial results.
func DecodeResponse(b []byte, r *Response) error {
	d := decoder{b: b}
	status := d.u32("status")
	if d.err == nil && status != 0 && (status < 100 || status > 999) {
		return malformed("status "+strconv.FormatUint(uint64(status), 10)+" out of range", 0)
	}
	r.Status = int(status)
	r.Headers = d.headers(r.Headers[:0])
	r.Body = d.str("body")
	d.end()
	return d.err
}

// ResponseSize returns the length of the encoding of r.
func ResponseSize(r *Response) int {
	n := 4 + 4 + 4 + len(r.Body)
	for _, h := range r.Headers {
		n += 8 + len(h.Name) + len(h.Value)
	}
	return n
}

// AppendResponse appends the encoding of r to dst, the inverse of DecodeResponse (for tools and
// tests that play the guest). It does not allocate when cap(dst)-len(dst) >= ResponseSize(r).
func AppendResponse(dst []byte, r *Response) []byte {
	if r.Status < 0 || r.Status > MaxLen {
		panic("abi: status " + strconv.Itoa(r.Status) + " does not fit in a u32")
	}
	dst = appendU32(dst, uint32(r.Status))
	dst = appendCount(dst, len(r.Headers))
	for _, h := range r.Headers {
		dst = appendStr(dst, h.Name)
		dst = appendStr(dst, h.Value)
	}
	return appendStr(dst, r.Body)
}

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func appendCount(dst []byte, n int) []byte {
	if uint64(n) > MaxLen {
		panic("abi: count " + strconv.Itoa(n) + " does not fit in a u32")
	}
	return appendU32(dst, uint32(n))
}

func appendStr(dst, s []byte) []byte {
	return append(appendCount(dst, len(s)), s...)
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

// str returns the next str; its capacity is capped so that appending to it cannot overwrite what
// follows it in b.
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

// headers reads header_count and the entries into hs.
func (d *decoder) headers(hs []Header) []Header {
	start := d.off
	n := d.u32("header_count")
	if d.err != nil {
		return hs
	}
	// Each entry takes at least 8 bytes: refuse a count that cannot fit before growing hs.
	if uint64(n) > uint64((len(d.b)-d.off)/8) {
		d.err = malformed("header_count "+strconv.FormatUint(uint64(n), 10)+" past end of "+
			strconv.Itoa(len(d.b))+" bytes", start)
		return hs
	}
	for i := uint32(0); i < n && d.err == nil; i++ {
		name := d.str("header name")
		value := d.str("header value")
		hs = append(hs, Header{Name: name, Value: value})
	}
	return hs
}

func (d *decoder) end() {
	if d.err == nil && d.off != len(d.b) {
		d.err = malformed(strconv.Itoa(len(d.b)-d.off)+" trailing bytes", d.off)
	}
}

func malformed(what string, off int) error {
	return &malformedError{what: what, off: off}
}

// malformedError says what was wrong and where; it wraps ErrMalformed.
type malformedError struct {
	what string
	off  int
}

func (e *malformedError) Error() string {
	return ErrMalformed.Error() + ": " + e.what + " at offset " + strconv.Itoa(e.off)
}

func (e *malformedError) Unwrap() error { return ErrMalformed }
