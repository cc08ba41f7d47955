//go:build unix

// Package cowmem backs the linear memory of wasm instances with private
// copy-on-write mappings of one memory image, so that creating an instance
// copies nothing and an instance costs only the pages it writes.
//
// An Image holds the image in an anonymous in-memory file (memfd). Its
// Allocator, passed to wazero with experimental.WithMemoryAllocator, gives
// each instance a reservation of address space for its maximum memory with
// the image mapped privately over its start. Pages the guest only reads stay
// shared with the image (one copy in memory: PSS counts it once, RSS once per
// instance that read it); a page it writes becomes its own copy; growth past
// the image maps zero pages up to the limit.
//
// The module instantiated with the allocator must not write its memory at
// instantiation (no data segments) and its memory's minimum must be the
// image's size: pool/snapshot rewrites modules that way. wazero does not clear
// or copy into memory it gets from an allocator; it writes only data segments.
package cowmem

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// PageSize is the size of a wasm page. An image is a whole number of them.
const PageSize = 64 << 10

// maxMemory is the largest memory a 32-bit wasm memory can have.
const maxMemory = 1 << 32

var heapFallbacks = metrics.NewCounter(`wisp_cowmem_heap_fallbacks_total`)

// Image is a linear memory image that instances map copy-on-write. It is
// safe for concurrent use; Close it once no more instances are created from
// it (instances already created keep working).
type Image struct {
	mu     sync.RWMutex // Close takes it exclusively, mapping the file takes it shared
	file   *os.File
	fd     int
	size   uint64
	sealed bool
}

// NewImageIn is NewImage with the image in a file under dir (a tmpfs or a
// disk), removed from the directory as soon as it is created.
func NewImageIn(dir string, mem []byte) (*Image, error) {
	if err := checkSize(mem); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "wisp-image-*")
	if err != nil {
		return nil, fmt.Errorf("cannot create memory image file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot unlink memory image file %q: %w", f.Name(), err)
	}
	return newImage(f, mem)
}

func checkSize(mem []byte) error {
	if len(mem)%PageSize != 0 || uint64(len(mem)) > maxMemory {
		return fmt.Errorf("cannot create memory image of %d bytes: want a whole number of %d-byte wasm pages, at most 4 GiB", len(mem), PageSize)
	}
	return nil
}

// newImage writes mem into f, skipping the pages that are all zero: f is
// sized first, so they read as zero without taking any memory or disk.
func newImage(f *os.File, mem []byte) (*Image, error) {
	fail := func(err error) (*Image, error) {
		f.Close()
		return nil, fmt.Errorf("cannot write memory image of %d bytes to %s: %w", len(mem), f.Name(), err)
	}
	if err := f.Truncate(int64(len(mem))); err != nil {
		return fail(err)
	}
	const chunk = 4 << 10
	var zero [chunk]byte
	for off := 0; off < len(mem); {
		if [chunk]byte(mem[off:off+chunk]) == zero {
			off += chunk
			continue
		}
		end := off + chunk
		for end < len(mem) && [chunk]byte(mem[end:end+chunk]) != zero {
			end += chunk
		}
		if _, err := f.WriteAt(mem[off:end], int64(off)); err != nil {
			return fail(err)
		}
		off = end
	}
	return &Image{file: f, fd: int(f.Fd()), size: uint64(len(mem))}, nil
}

// Size returns the image's size in bytes.
func (img *Image) Size() uint64 { return img.size }

// Close releases the image's file. Memories already allocated from it keep
// their mapping and stay valid; allocating from a closed Image panics.
func (img *Image) Close() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.file == nil {
		return nil
	}
	err := img.file.Close()
	img.file = nil
	return err
}

// Allocator returns a memory allocator that starts each memory with the
// image. maxBytes limits each memory: growth beyond it fails inside the
// guest (memory.grow returns -1). 0 means the module's own maximum (4 GiB
// if it declares none); a limit below the image's size is raised to it.
// The limit is rounded down to whole wasm pages.
//
// The allocator is safe for concurrent use. Each memory it allocates belongs
// to one instance, whose calls wazero serializes.
//
// A memory's address space is unmapped when wazero frees it, that is when
// its instance is closed: close an instance only when no call is running in
// it. (wazero's WithCloseOnContextDone is safe: the running call frees the
// memory as it returns. An explicit Close from another goroutine while a call
// runs would make that call fault, where Go-heap memory would not.)
//
// If the kernel refuses a mapping (for example at the vm.max_map_count
// limit), the memory falls back to a copy of the image on the Go heap: the
// instance works, at the cost of a copy, and
// wisp_cowmem_heap_fallbacks_total counts it.
func (img *Image) Allocator(maxBytes uint64) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, moduleMax uint64) experimental.LinearMemory {
		return img.allocate(memoryLimit(img, maxBytes, moduleMax))
	})
}

// memoryLimit is the size a memory of img may grow to under maxBytes (see Allocator).
func memoryLimit(img *Image, maxBytes, moduleMax uint64) uint64 {
	limit := min(moduleMax, maxMemory)
	if maxBytes != 0 {
		limit = min(limit, maxBytes)
	}
	return max(limit/PageSize*PageSize, img.size)
}

func (img *Image) allocate(limit uint64) experimental.LinearMemory {
	img.mu.RLock()
	defer img.mu.RUnlock()
	if img.file == nil {
		panic("cowmem: Allocate on a closed Image")
	}
	m, err := img.mapMemory(limit)
	if err == nil {
		return m
	}
	heapFallbacks.Inc()
	h := &heapMemory{limit: limit, buf: make([]byte, img.size)}
	if _, err := img.file.ReadAt(h.buf, 0); err != nil {
		panic(fmt.Sprintf("cowmem: cannot read memory image of %d bytes: %v", img.size, err))
	}
	return h
}

// mapMemory reserves limit bytes of address space, inaccessible, and maps
// the image privately over its start.
func (img *Image) mapMemory(limit uint64) (*mappedMemory, error) {
	base, err := unix.MmapPtr(-1, 0, nil, uintptr(limit), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("cannot reserve %d bytes: %w", limit, err)
	}
	if img.size > 0 {
		_, err = unix.MmapPtr(img.fd, 0, base, uintptr(img.size), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_FIXED)
		if err != nil {
			_ = unix.MunmapPtr(base, uintptr(limit))
			return nil, fmt.Errorf("cannot map image of %d bytes: %w", img.size, err)
		}
	}
	return &mappedMemory{base: base, reserved: limit, committed: img.size, imageSize: img.size}, nil
}

// mappedMemory is a linear memory in its own reservation of address space:
// [0, imageSize) maps the image, [imageSize, committed) is anonymous memory,
// and [committed, reserved) is inaccessible.
type mappedMemory struct {
	base      unsafe.Pointer // not Go memory: the GC ignores it
	reserved  uint64
	committed uint64
	imageSize uint64
	used      bool // Reallocate was called
}

// Reallocate implements experimental.LinearMemory.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.base == nil {
		return nil
	}
	if !m.used && size < m.imageSize {
		panic(fmt.Sprintf("cowmem: memory of %d bytes is smaller than its image of %d bytes: "+
			"the module's memory minimum must be the image's size", size, m.imageSize))
	}
	m.used = true
	if size > m.reserved {
		return nil
	}
	if size > m.committed {
		grow := unsafe.Slice((*byte)(unsafe.Add(m.base, m.committed)), size-m.committed)
		if err := unix.Mprotect(grow, unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.committed = size
	}
	return unsafe.Slice((*byte)(m.base), size)
}

// Free implements experimental.LinearMemory. It unmaps the memory.
func (m *mappedMemory) Free() {
	if m.base == nil {
		return
	}
	if err := unix.MunmapPtr(m.base, uintptr(m.reserved)); err != nil {
		panic(fmt.Sprintf("cowmem: cannot unmap memory of %d bytes: %v", m.reserved, err))
	}
	m.base = nil
}

// heapMemory is the fallback for a memory that could not be mapped.
type heapMemory struct {
	limit uint64
	buf   []byte
}

// Reallocate implements experimental.LinearMemory.
func (h *heapMemory) Reallocate(size uint64) []byte {
	if size > h.limit {
		return nil
	}
	if size > uint64(len(h.buf)) {
		h.buf = append(h.buf, make([]byte, size-uint64(len(h.buf)))...)
	}
	return h.buf[:size]
}

// Free implements experimental.LinearMemory.
func (h *heapMemory) Free() { h.buf = nil }
