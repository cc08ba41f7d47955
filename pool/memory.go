package pool

import "github.com/tetratelabs/wazero/experimental"

// limitAllocator returns an allocator whose linear memories never grow past limit bytes:
// memory.grow past it fails inside the guest (a Go guest then reports out of memory).
func limitAllocator(limit uint64) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capBytes, maxBytes uint64) experimental.LinearMemory {
		if maxBytes > limit {
			maxBytes = limit
		}
		return &sliceMemory{max: maxBytes}
	})
}

// sliceMemory is a linear memory in a Go slice, grown by copying with doubling capacity.
// Used by one instance; wazero serializes calls on it.
type sliceMemory struct {
	buf []byte
	max uint64
}

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	newCap := 2 * uint64(cap(m.buf))
	if newCap < size {
		newCap = size
	}
	if newCap > m.max {
		newCap = m.max
	}
	buf := make([]byte, size, newCap)
	copy(buf, m.buf)
	m.buf = buf
	return m.buf
}

func (m *sliceMemory) Free() { m.buf = nil }
