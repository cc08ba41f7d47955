package cowmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// Tracker is a memory allocator for one instance at a time that tells which pages of its
// memory the instance touches from a point on, reads and writes apart: Restart maps the
// memory's current content back over it as a private mapping of a fresh image, so that no
// page is mapped in; after the instance ran, Touched reads /proc/self/pagemap, where a page
// mapped from the image was read and a page copied from it was written. It is how a host
// learns the pages a Staged allocator maps ahead.
//
// Allocate is for one instance at a time (a later Allocate replaces the memory tracked); the
// other methods must not run during a call into that instance.
type Tracker struct {
	mu  sync.Mutex
	mem *mappedMemory
	img *Image
}

// NewTracker returns a Tracker, or nil where pages cannot be tracked (no /proc/self/pagemap).
func NewTracker() *Tracker {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	f.Close()
	return &Tracker{}
}

// Allocate implements experimental.MemoryAllocator: an empty memory that may grow to the
// module's maximum.
func (t *Tracker) Allocate(_, moduleMax uint64) experimental.LinearMemory {
	limit := min(moduleMax, maxMemory) / PageSize * PageSize
	base, err := unix.MmapPtr(-1, 0, nil, uintptr(limit), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mem = nil
	if err != nil {
		heapFallbacks.Inc()
		return &heapMemory{limit: limit}
	}
	t.mem = &mappedMemory{base: base, reserved: limit}
	return t.mem
}

// errNotTracked is returned when the memory is not one Restart can track.
var errNotTracked = errors.New("cowmem: no tracked memory: none allocated, freed, or on the Go heap")

// Restart starts tracking: the first size bytes of the memory (the whole memory, a whole
// number of wasm pages) become a private mapping of an image of their current content.
func (t *Tracker) Restart(size uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.mem
	if m == nil || m.base == nil {
		return errNotTracked
	}
	if size == 0 || size > m.committed || size%PageSize != 0 {
		return fmt.Errorf("cowmem: cannot track %d bytes of a memory of %d: want whole wasm pages within it", size, m.committed)
	}
	img, err := NewImage(unsafe.Slice((*byte)(m.base), size))
	if err != nil {
		return err
	}
	if _, err := unix.MmapPtr(img.fd, 0, m.base, uintptr(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
		img.Close()
		return fmt.Errorf("cowmem: cannot map %d bytes to track: %w", size, err)
	}
	if t.img != nil {
		t.img.Close()
	}
	t.img = img
	return nil
}

// Touched returns the indices of the HostPageSize pages of the tracked range that the
// instance read (and did not write) and those it wrote since Restart, each in increasing
// order. Reads are counted by page mapped in, so the kernel's fault-around may count a few
// neighbours of a page read as read too.
func (t *Tracker) Touched() (read, written []uint32, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.img == nil || t.mem == nil || t.mem.base == nil {
		return nil, nil, errNotTracked
	}
	n := int(t.img.size / HostPageSize)
	entries := make([]byte, 8*n)
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if _, err := f.ReadAt(entries, int64(uintptr(t.mem.base)/HostPageSize*8)); err != nil {
		return nil, nil, fmt.Errorf("cowmem: cannot read pagemap: %w", err)
	}
	for i := range n {
		e := binary.LittleEndian.Uint64(entries[8*i:])
		switch {
		case e&pagePresent == 0:
		case e&pageFileOrShared != 0:
			read = append(read, uint32(i))
		default:
			written = append(written, uint32(i))
		}
	}
	return read, written, nil
}

// Bits of a /proc/self/pagemap entry.
const (
	pagePresent      = 1 << 63
	pageFileOrShared = 1 << 61
)

// Close stops tracking and releases the image; the memory itself is its instance's.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.img != nil {
		t.img.Close()
		t.img = nil
	}
	t.mem = nil
}
