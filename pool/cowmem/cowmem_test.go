//go:build linux

package cowmem

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

// pattern returns an image of pages wasm pages whose odd 4 KiB pages hold
// a pattern and whose even ones are zero.
func pattern(pages int) []byte {
	mem := make([]byte, pages*PageSize)
	for off := 4 << 10; off < len(mem); off += 8 << 10 {
		for i := range 4 << 10 {
			mem[off+i] = byte(off>>12 + i)
		}
	}
	return mem
}

// constructors are the ways to make an image, all tested alike.
var constructors = []struct {
	name string
	new  func(t *testing.T, mem []byte) (*Image, error)
}{
	{"memfd", func(_ *testing.T, mem []byte) (*Image, error) { return NewImage(mem) }},
	{"file", func(t *testing.T, mem []byte) (*Image, error) { return NewImageIn(t.TempDir(), mem) }},
}

func newTestImage(t *testing.T, construct func(*testing.T, []byte) (*Image, error), mem []byte) *Image {
	t.Helper()
	img, err := construct(t, mem)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func TestNewImageRefusesPartialPages(t *testing.T) {
	for _, size := range []int{1, PageSize - 1, PageSize + 4096} {
		if _, err := NewImage(make([]byte, size)); err == nil {
			t.Errorf("NewImage(%d bytes): got no error; want one", size)
		}
		if _, err := NewImageIn(t.TempDir(), make([]byte, size)); err == nil {
			t.Errorf("NewImageIn(%d bytes): got no error; want one", size)
		}
	}
}

func TestImageIsSparse(t *testing.T) {
	mem := make([]byte, 64*PageSize) // 4 MiB, one 4 KiB page of it not zero
	mem[10*PageSize+5] = 1
	img, err := NewImage(mem)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if !img.sealed {
		t.Log("memfd sealing is not available on this kernel")
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(img.fd, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := st.Size, int64(len(mem)); got != want {
		t.Errorf("image file size = %d; want %d", got, want)
	}
	if used := st.Blocks * 512; used > 64<<10 {
		t.Errorf("image file uses %d bytes for one non-zero 4 KiB page; want it sparse", used)
	}
}

func TestMemory(t *testing.T) {
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			mem := pattern(4)
			img := newTestImage(t, c.new, mem)
			const limit = 6 * PageSize
			alloc := img.Allocator(limit)

			a := alloc.Allocate(uint64(len(mem)), 1<<32)
			defer a.Free()
			buf := a.Reallocate(uint64(len(mem)))
			if !bytes.Equal(buf, mem) {
				t.Fatal("memory does not start with the image")
			}

			// Writes are private to the memory.
			buf[0], buf[len(buf)-1] = 0xaa, 0xbb
			b := alloc.Allocate(uint64(len(mem)), 1<<32)
			defer b.Free()
			if other := b.Reallocate(uint64(len(mem))); !bytes.Equal(other, mem) {
				t.Fatal("a write in one memory shows in another")
			}

			// Growth adds zero pages, keeps the content, stops at the limit.
			grown := a.Reallocate(limit)
			if len(grown) != limit {
				t.Fatalf("Reallocate(%d) returned %d bytes", limit, len(grown))
			}
			if grown[0] != 0xaa || !bytes.Equal(grown[1:len(mem)-1], mem[1:len(mem)-1]) {
				t.Error("growing lost the memory's content")
			}
			if !bytes.Equal(grown[len(mem):], make([]byte, limit-len(mem))) {
				t.Error("grown pages are not zero")
			}
			grown[limit-1] = 1 // writable
			if got := a.Reallocate(limit + PageSize); got != nil {
				t.Errorf("Reallocate past the limit returned %d bytes; want nil", len(got))
			}
			if got := a.Reallocate(limit); len(got) != limit || got[limit-1] != 1 {
				t.Error("memory unusable after a failed growth")
			}

			// The image itself never changes.
			c := alloc.Allocate(uint64(len(mem)), 1<<32)
			defer c.Free()
			if fresh := c.Reallocate(uint64(len(mem))); !bytes.Equal(fresh, mem) {
				t.Fatal("writes to a memory changed the image")
			}
		})
	}
}

func TestAllocatorLimit(t *testing.T) {
	img, err := NewImage(pattern(2))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	tests := []struct {
		name      string
		maxBytes  uint64
		moduleMax uint64
		want      uint64 // largest size Reallocate grants
	}{
		{"limit", 5 * PageSize, 1 << 32, 5 * PageSize},
		{"module max below limit", 5 * PageSize, 3 * PageSize, 3 * PageSize},
		{"no limit", 0, 4 * PageSize, 4 * PageSize},
		{"limit rounded down", 5*PageSize + 100, 1 << 32, 5 * PageSize},
		{"limit below image", PageSize, 1 << 32, 2 * PageSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := img.Allocator(tt.maxBytes).Allocate(0, tt.moduleMax)
			defer m.Free()
			m.Reallocate(img.Size())
			if got := m.Reallocate(tt.want); uint64(len(got)) != tt.want {
				t.Errorf("Reallocate(%d) returned %d bytes", tt.want, len(got))
			}
			if got := m.Reallocate(tt.want + PageSize); got != nil {
				t.Errorf("Reallocate(%d) returned %d bytes; want nil", tt.want+PageSize, len(got))
			}
		})
	}
}

func TestCloseKeepsMemories(t *testing.T) {
	mem := pattern(2)
	img, err := NewImage(mem)
	if err != nil {
		t.Fatal(err)
	}
	alloc := img.Allocator(0)
	m := alloc.Allocate(0, 4*PageSize)
	defer m.Free()
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if buf := m.Reallocate(3 * PageSize); !bytes.Equal(buf[:len(mem)], mem) {
		t.Error("memory lost its content when its image was closed")
	}
	defer func() {
		if recover() == nil {
			t.Error("Allocate on a closed image did not panic")
		}
	}()
	alloc.Allocate(0, 4*PageSize)
}

func TestFreeIsIdempotent(t *testing.T) {
	img, err := NewImage(pattern(1))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	m := img.Allocator(0).Allocate(0, 2*PageSize)
	m.Reallocate(PageSize)
	m.Free()
	m.Free()
	if got := m.Reallocate(PageSize); got != nil {
		t.Error("Reallocate after Free returned memory")
	}
}

func TestSmallerThanImagePanics(t *testing.T) {
	img, err := NewImage(pattern(2))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	m := img.Allocator(0).Allocate(0, 4*PageSize)
	defer m.Free()
	defer func() {
		if recover() == nil {
			t.Error("a first Reallocate below the image's size did not panic")
		}
	}()
	m.Reallocate(PageSize)
}

func TestHeapFallback(t *testing.T) {
	mem := pattern(2)
	img, err := NewImage(mem)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	before := heapFallbacks.Get()
	m := img.allocate(1 << 62) // more address space than exists: the mapping fails
	defer m.Free()
	if _, ok := m.(*heapMemory); !ok {
		t.Fatalf("allocate(1<<62) returned a %T; want the heap fallback", m)
	}
	if got := heapFallbacks.Get(); got != before+1 {
		t.Errorf("wisp_cowmem_heap_fallbacks_total = %d; want %d", got, before+1)
	}
	if buf := m.Reallocate(uint64(len(mem))); !bytes.Equal(buf, mem) {
		t.Fatal("fallback memory does not start with the image")
	}
	buf := m.Reallocate(4 * PageSize)
	if !bytes.Equal(buf[:len(mem)], mem) || !bytes.Equal(buf[len(mem):], make([]byte, 2*PageSize)) {
		t.Error("fallback memory grew wrong")
	}
}

// TestConcurrentAllocate hammers one image from many goroutines: each
// allocates memories, writes its own mark, grows and frees them.
func TestConcurrentAllocate(t *testing.T) {
	mem := pattern(2)
	img, err := NewImage(mem)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	alloc := img.Allocator(8 * PageSize)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				m := alloc.Allocate(0, 1<<32)
				buf := m.Reallocate(uint64(len(mem)))
				if buf[4<<10] != mem[4<<10] {
					errs <- fmt.Errorf("goroutine %d: memory %d does not start with the image", g, i)
				}
				buf[4<<10] = byte(g)
				buf = m.Reallocate(uint64(len(mem)) + uint64(i%6)*PageSize)
				if buf[4<<10] != byte(g) {
					errs <- fmt.Errorf("goroutine %d: memory %d lost its write", g, i)
				}
				m.Free()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWazeroKeepsImage checks, with a real wazero instance, that a memory
// created through the allocator is neither cleared nor written at
// instantiation when the module has no data segments, and that memory.grow
// fails inside the guest at the limit.
func TestWazeroKeepsImage(t *testing.T) {
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			const pages = 3
			mem := pattern(pages)
			img := newTestImage(t, c.new, mem)
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			compiled, err := rt.CompileModule(ctx, memoryModule(pages))
			if err != nil {
				t.Fatal(err)
			}
			actx := experimental.WithMemoryAllocator(ctx, img.Allocator(5*PageSize))
			mods := make([]*testModule, 2)
			for i := range mods {
				mod, err := rt.InstantiateModule(actx, compiled, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					t.Fatal(err)
				}
				defer mod.Close(ctx)
				mods[i] = &testModule{t: t, mod: mod}
			}
			a, b := mods[0], mods[1]
			for _, off := range []uint64{0, 4 << 10, 4<<10 + 7, pages*PageSize - 1} {
				if got, want := a.call("load", off), uint64(mem[off]); got != want {
					t.Errorf("load(%d) = %d; want %d from the image", off, got, want)
				}
			}
			a.call("store", 4<<10, 0xee)
			if got := b.call("load", 4<<10); got != uint64(mem[4<<10]) {
				t.Errorf("a store in one instance shows in another: load = %#x", got)
			}
			if got := a.call("grow", 2); got != pages {
				t.Errorf("grow(2) = %d; want %d", int32(got), pages)
			}
			if got := a.call("load", pages*PageSize+1); got != 0 {
				t.Errorf("load from a grown page = %d; want 0", got)
			}
			if got := int32(a.call("grow", 1)); got != -1 {
				t.Errorf("grow(1) past the limit = %d; want -1", got)
			}
			if got := a.call("load", 4<<10); got != 0xee {
				t.Errorf("memory lost a store after a failed grow: load = %#x", got)
			}
		})
	}
}
