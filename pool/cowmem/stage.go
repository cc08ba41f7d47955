//go:build unix

package cowmem

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tetratelabs/wazero/experimental"
)

// HostPageSize is the unit of the pages a Staged allocator copies ahead: the host's page.
const HostPageSize = 4096

var (
	stagedHits   = metrics.NewCounter(`wisp_cowmem_staged_total{outcome="hit"}`)
	stagedMisses = metrics.NewCounter(`wisp_cowmem_staged_total{outcome="miss"}`)
	stagedBytes  = metrics.NewGauge(`wisp_cowmem_staged_bytes`, nil)
)

// StageBudget bounds the memory that staged mappings hold, across the Staged allocators that
// share it. Safe for concurrent use.
type StageBudget struct {
	max  int64
	used atomic.Int64
}

// NewStageBudget returns a budget of max bytes; 0 stages nothing. A nil *StageBudget has no
// bound.
func NewStageBudget(max int64) *StageBudget { return &StageBudget{max: max} }

func (b *StageBudget) acquire(n int64) bool {
	if b == nil {
		stagedBytes.Add(float64(n))
		return true
	}
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	stagedBytes.Add(float64(n))
	return true
}

func (b *StageBudget) release(n int64) {
	if b != nil {
		b.used.Add(-n)
	}
	stagedBytes.Add(float64(-n))
}

// Staged is an Allocator that keeps one memory mapped ahead of use with the pages an
// instance's first call writes already copied (MADV_POPULATE_WRITE) and the image pages it only
// reads already mapped in (MADV_POPULATE_READ), so that the first call after a cold start takes
// no page fault on them, and instantiation makes no mapping call. It refills in the background
// after each use. The pages are a hint (from snapshot.Snapshot.FirstWrites and a Tracker): a
// page not listed is mapped or copied on first use as usual.
//
// A memory it hands out is an ordinary one of the image's. Close releases the staged memory;
// memories already handed out are unaffected.
type Staged struct {
	img      *Image
	maxBytes uint64
	writes   [][2]uint32 // runs of consecutive pages copied ahead: first index, count
	reads    [][2]uint32 // runs of consecutive pages mapped in ahead
	cost     int64       // bytes a staged memory holds: its copies
	budget   *StageBudget

	mu      sync.Mutex
	ready   *mappedMemory // staged, nil if none
	limit   uint64        // of ready, and of the memories asked for so far
	filling bool
	closed  bool
}

// Staged returns an allocator like Allocator(maxBytes) that stages memories with the pages
// writes copied ahead and the pages reads mapped in ahead (indices of HostPageSize pages of the
// image, in increasing order; those past the image are ignored), within budget. It stages
// nothing without writes, and its first memory after its first allocation, when it knows the
// module's maximum.
func (img *Image) Staged(maxBytes uint64, writes, reads []uint32, budget *StageBudget) *Staged {
	s := &Staged{img: img, maxBytes: maxBytes, budget: budget}
	s.writes = img.pageRanges(writes)
	for _, r := range s.writes {
		s.cost += int64(r[1]) * HostPageSize
	}
	s.reads = img.pageRanges(reads)
	return s
}

// pageRanges turns page indices into runs of consecutive pages within the image.
func (img *Image) pageRanges(pages []uint32) [][2]uint32 {
	var ranges [][2]uint32
	for _, p := range pages {
		if uint64(p+1)*HostPageSize > img.size {
			continue
		}
		if n := len(ranges); n > 0 && ranges[n-1][0]+ranges[n-1][1] == p {
			ranges[n-1][1]++
		} else {
			ranges = append(ranges, [2]uint32{p, 1})
		}
	}
	return ranges
}

// Allocate implements experimental.MemoryAllocator.
func (s *Staged) Allocate(_, moduleMax uint64) experimental.LinearMemory {
	limit := memoryLimit(s.img, s.maxBytes, moduleMax)
	s.mu.Lock()
	m := s.ready
	if m != nil && m.reserved == limit {
		s.ready = nil
		s.budget.release(s.cost)
	} else {
		m = nil
	}
	s.limit = limit
	fill := len(s.writes) > 0 && !s.filling && !s.closed && s.ready == nil
	s.filling = s.filling || fill
	s.mu.Unlock()
	if fill {
		go s.fill(limit)
	}
	if m != nil {
		stagedHits.Inc()
		return m
	}
	stagedMisses.Inc()
	return s.img.allocate(limit)
}

// fill stages one memory of limit bytes, if the budget allows.
func (s *Staged) fill(limit uint64) {
	var m *mappedMemory
	if s.budget.acquire(s.cost) {
		if m = s.img.mapStaged(limit, s.writes, s.reads); m == nil {
			s.budget.release(s.cost)
		}
	}
	s.mu.Lock()
	s.filling = false
	if m != nil && (s.closed || s.ready != nil || s.limit != limit) {
		s.mu.Unlock()
		m.Free()
		s.budget.release(s.cost)
		return
	}
	s.ready = m
	s.mu.Unlock()
}

// Ready reports whether a staged memory is waiting for the next allocation.
func (s *Staged) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready != nil
}

// Close unmaps the staged memory, if any, and stops staging.
func (s *Staged) Close() {
	s.mu.Lock()
	m := s.ready
	s.ready, s.closed = nil, true
	s.mu.Unlock()
	if m != nil {
		m.Free()
		s.budget.release(s.cost)
	}
}

// mapStaged maps a memory of limit bytes, maps the pages of reads in and copies those of
// writes; nil if the image is closed or the kernel refuses.
func (img *Image) mapStaged(limit uint64, writes, reads [][2]uint32) *mappedMemory {
	img.mu.RLock()
	defer img.mu.RUnlock()
	if img.file == nil {
		return nil
	}
	m, err := img.mapMemory(limit)
	if err != nil {
		return nil
	}
	for _, r := range reads {
		populateRead(m.pages(r))
	}
	for _, r := range writes {
		populateWrite(m.pages(r))
	}
	return m
}

// pages returns the run r of m's HostPageSize pages.
func (m *mappedMemory) pages(r [2]uint32) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(m.base, uintptr(r[0])*HostPageSize)), uintptr(r[1])*HostPageSize)
}

// touchWrite makes each page of b private by writing it with its own content: an atomic add
// of zero to its first word, which the compiler cannot drop.
func touchWrite(b []byte) {
	for off := 0; off < len(b); off += HostPageSize {
		atomic.AddUint32((*uint32)(unsafe.Pointer(&b[off])), 0)
	}
}
