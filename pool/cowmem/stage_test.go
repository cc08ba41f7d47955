//go:build linux

package cowmem

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
	"time"
	"unsafe"
)

// pageState reads /proc/self/pagemap for the host page at p: whether it is mapped in, and
// whether it is anonymous (a private copy) rather than the image file's page.
func pageState(t *testing.T, p unsafe.Pointer) (present, anon bool) {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skipf("no pagemap: %v", err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(uintptr(p)/HostPageSize*8)); err != nil {
		t.Fatal(err)
	}
	e := binary.LittleEndian.Uint64(b[:])
	return e&(1<<63) != 0, e&(1<<61) == 0
}

// stagedNow reports whether s holds a staged memory or is making one.
func stagedNow(s *Staged) (ready, filling bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready != nil, s.filling
}

// waitStaged waits until s holds a staged memory.
func waitStaged(t *testing.T, s *Staged) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		ok := s.ready != nil
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing staged after 10s")
		}
	}
}

func TestStaged(t *testing.T) {
	mem := pattern(4) // 64 host pages
	img := newTestImage(t, constructors[0].new, mem)
	const limit = 6 * PageSize
	s := img.Staged(limit, []uint32{1, 2, 3, 10, 64, 500}, []uint32{20, 21, 30, 70}, nil) // 64 and later lie past the image
	defer s.Close()
	if len(s.writes) != 2 || s.cost != 4*HostPageSize || len(s.reads) != 2 {
		t.Fatalf("writes %v, reads %v, cost %d; want [1 3] [10 1], [20 2] [30 1], 4 pages", s.writes, s.reads, s.cost)
	}

	hits, misses := stagedHits.Get(), stagedMisses.Get()
	first := s.Allocate(uint64(len(mem)), 1<<32) // nothing staged yet: mapped on the spot
	defer first.Free()
	if !bytes.Equal(first.Reallocate(uint64(len(mem))), mem) {
		t.Fatal("first memory does not start with the image")
	}
	waitStaged(t, s)
	m := s.Allocate(uint64(len(mem)), 1<<32)
	defer m.Free()
	if stagedHits.Get() != hits+1 || stagedMisses.Get() != misses+1 {
		t.Fatalf("hits +%d, misses +%d; want one of each", stagedHits.Get()-hits, stagedMisses.Get()-misses)
	}
	buf := m.Reallocate(uint64(len(mem)))
	// Pages written are private copies, pages read are the image's, mapped in; the others may be
	// mapped in too (the kernel maps neighbours of a read in, how many is its own policy: fault
	// around, large folios), but never copied.
	for _, tt := range []struct {
		page          int
		present, anon bool
	}{{1, true, true}, {3, true, true}, {10, true, true}, {20, true, false}, {21, true, false}, {30, true, false}, {5, false, false}, {40, false, false}} {
		present, anon := pageState(t, unsafe.Pointer(&buf[tt.page*HostPageSize]))
		if tt.present && (!present || anon != tt.anon) || !tt.present && present && anon {
			t.Errorf("page %d: present %v anonymous %v; want %v %v", tt.page, present, anon, tt.present, tt.anon)
		}
	}
	if !bytes.Equal(buf, mem) {
		t.Fatal("staged memory does not hold the image")
	}

	// A staged memory is an ordinary one: private writes, growth to the limit.
	buf[HostPageSize] = 0xaa
	if grown := m.Reallocate(limit); len(grown) != limit || grown[HostPageSize] != 0xaa {
		t.Fatal("staged memory does not grow with its content")
	}
	waitStaged(t, s) // refilled after the hit
	next := s.Allocate(uint64(len(mem)), 1<<32)
	defer next.Free()
	if !bytes.Equal(next.Reallocate(uint64(len(mem))), mem) {
		t.Fatal("a write to one staged memory shows in the next")
	}

	// Closed, it stages nothing more.
	waitStaged(t, s)
	s.Close()
	if ready, _ := stagedNow(s); ready {
		t.Fatal("Close left a staged memory")
	}
	after := s.Allocate(uint64(len(mem)), 1<<32)
	defer after.Free()
	time.Sleep(10 * time.Millisecond)
	if ready, filling := stagedNow(s); ready || filling {
		t.Fatal("a closed Staged staged again")
	}
}

func TestStageBudget(t *testing.T) {
	mem := pattern(2)
	img := newTestImage(t, constructors[0].new, mem)
	pages := []uint32{0, 1, 2, 3}

	none := img.Staged(0, pages, nil, NewStageBudget(3*HostPageSize)) // less than one memory's pages
	defer none.Close()
	m := none.Allocate(uint64(len(mem)), 1<<32)
	defer m.Free()
	time.Sleep(20 * time.Millisecond)
	if ready, _ := stagedNow(none); ready {
		t.Fatal("staged past the budget")
	}

	b := NewStageBudget(4 * HostPageSize)
	s := img.Staged(0, pages, pages, b)
	defer s.Close()
	first := s.Allocate(uint64(len(mem)), 1<<32)
	defer first.Free()
	waitStaged(t, s)
	if b.used.Load() != 4*HostPageSize {
		t.Fatalf("budget used %d; want %d", b.used.Load(), 4*HostPageSize)
	}
	taken := s.Allocate(uint64(len(mem)), 1<<32) // handing it out returns its share
	defer taken.Free()
	waitStaged(t, s)
	s.Close()
	if b.used.Load() != 0 {
		t.Fatalf("budget used %d after Close; want 0", b.used.Load())
	}
}

func TestStagedClosedImage(t *testing.T) {
	img, err := NewImage(pattern(1))
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	if m := img.mapStaged(PageSize, [][2]uint32{{0, 1}}, nil); m != nil {
		m.Free()
		t.Fatal("staged a memory of a closed image")
	}
}
