//go:build wasip1

package faas

import (
	"unsafe"

	"github.com/wispfn/wisp/sdk/go/faas/http"
)

// Start records h as the handler of every request and returns. Call it once, from main; main
// should return after it (the instance then waits for requests).
func Start(h func(*http.Request) *http.Response) {
	if h == nil {
		panic("faas.Start: nil handler")
	}
	handler = h
}

// reqBuf is the buffer last returned by wisp_alloc. It belongs to the host, which writes requests
// into it; keeping it here keeps it alive (Go's GC does not move objects).
var reqBuf []byte

// wispAlloc returns the address of a new buffer of size bytes for the host to write requests into.
//
//go:wasmexport wisp_alloc
func wispAlloc(size uint32) uint32 {
	reqBuf = make([]byte, max(size, 1))
	return address(reqBuf)
}

// wispHandle handles the request at [ptr, ptr+size), which must lie in the buffer last returned
// by wisp_alloc, and returns the response's address << 32 | its length. The response stays valid
// until the next call into the guest.
//
//go:wasmexport wisp_handle
func wispHandle(ptr, size uint32) uint64 {
	var out []byte
	base := address(reqBuf)
	if reqBuf == nil || ptr < base || uint64(ptr-base)+uint64(size) > uint64(len(reqBuf)) {
		out = failure(respBuf[:0], "request is outside the buffer returned by wisp_alloc")
		respBuf = out
	} else {
		off := ptr - base
		out = serve(reqBuf[off : off+size])
	}
	return uint64(address(out))<<32 | uint64(len(out))
}

// address returns the linear-memory address of b's first byte.
func address(b []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
