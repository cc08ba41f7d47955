// Package body is the in-memory body behind http.NewBody and every request body, shared by
// faas/http (which makes them) and faas (which encodes them without copying through io.Reader).
package body

import (
	"errors"
	"io"
)

// ErrDetached is returned by Read on a request body after its handler has returned: the bytes
// belonged to the host's request buffer and are gone.
var ErrDetached = errors.New("http: read on request body after the handler returned")

// Bytes is an io.ReadCloser over a byte slice it does not copy.
type Bytes struct {
	b   []byte
	off int
	err error // returned by Read once set
}

// New returns a Bytes reading b. The caller must not modify b while the Bytes is in use.
func New(b []byte) *Bytes { return &Bytes{b: b} }

// Reset makes r read b from the start.
func (r *Bytes) Reset(b []byte) { *r = Bytes{b: b} }

// Detach drops the slice: further reads fail with ErrDetached.
func (r *Bytes) Detach() { *r = Bytes{err: ErrDetached} }

// Unread returns the bytes not read yet, aliasing the slice given to New or Reset.
func (r *Bytes) Unread() []byte { return r.b[r.off:] }

// Len returns the number of bytes not read yet.
func (r *Bytes) Len() int { return len(r.b) - r.off }

// Read implements io.Reader.
func (r *Bytes) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// WriteTo implements io.WriterTo, so io.Copy writes the bytes in one call.
func (r *Bytes) WriteTo(w io.Writer) (int64, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := w.Write(r.b[r.off:])
	r.off += n
	return int64(n), err
}

// Close implements io.Closer; it never fails.
func (r *Bytes) Close() error { return nil }
