//go:build wasip1

package hostcall

import "unsafe"

//go:wasmimport wisp submit
func wispSubmit(eventID, providerID uint32, data unsafe.Pointer, dataLen uint32) int32

//go:wasmimport wisp poll
func wispPoll(eventIDPtr, sizePtr unsafe.Pointer) int32

//go:wasmimport wisp wait
func wispWait(eventIDPtr, sizePtr unsafe.Pointer) int32

//go:wasmimport wisp read
func wispRead(eventID, providerID uint32, data unsafe.Pointer) int32

// Where poll and wait write an event id and size. The guest has one thread.
var outID, outSize uint32

func submit(id, provider uint32, payload []byte) int32 {
	return wispSubmit(id, provider, unsafe.Pointer(unsafe.SliceData(payload)), uint32(len(payload)))
}

func poll() (id, size uint32, r int32) {
	r = wispPoll(unsafe.Pointer(&outID), unsafe.Pointer(&outSize))
	return outID, outSize, r
}

func wait() (id, size uint32, r int32) {
	r = wispWait(unsafe.Pointer(&outID), unsafe.Pointer(&outSize))
	return outID, outSize, r
}

// read copies the result of id into buf, which holds at least the size poll or wait reported.
func read(id, provider uint32, buf []byte) int32 {
	return wispRead(id, provider, unsafe.Pointer(unsafe.SliceData(buf)))
}
