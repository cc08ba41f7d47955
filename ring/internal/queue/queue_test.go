package queue

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestFIFOFullEmpty(t *testing.T) {
	q := New[int](3)
	if got := q.Cap(); got != 4 {
		t.Fatalf("Cap() = %d; want 4 (rounded up to a power of two)", got)
	}
	if _, ok := q.Pop(); ok {
		t.Fatal("Pop on an empty queue succeeded")
	}
	for lap := 0; lap < 3; lap++ { // wrap around the cells several times
		for i := 0; i < 4; i++ {
			if !q.Push(lap*10 + i) {
				t.Fatalf("lap %d: Push %d failed on a queue of %d", lap, i, q.Len())
			}
		}
		if q.Push(99) {
			t.Fatalf("lap %d: Push on a full queue succeeded", lap)
		}
		if got := q.Len(); got != 4 {
			t.Fatalf("lap %d: Len() = %d; want 4", lap, got)
		}
		var batch [3]int
		if n := q.PopBatch(batch[:]); n != 3 || batch != [3]int{lap * 10, lap*10 + 1, lap*10 + 2} {
			t.Fatalf("lap %d: PopBatch = %d %v; want 3 in order", lap, n, batch)
		}
		if v, ok := q.Pop(); !ok || v != lap*10+3 {
			t.Fatalf("lap %d: Pop = %d %v; want %d", lap, v, ok, lap*10+3)
		}
		if n := q.PopBatch(batch[:]); n != 0 {
			t.Fatalf("lap %d: PopBatch on an empty queue = %d", lap, n)
		}
	}
}

func TestPopReleasesValue(t *testing.T) {
	q := New[*int](2)
	q.Push(new(int))
	q.Pop()
	for i := range q.cells {
		if q.cells[i].val != nil {
			t.Fatalf("cell %d still references a popped value", i)
		}
	}
}

// TestHammer pushes from many goroutines and pops from several, then checks that every value
// arrived exactly once and that each consumer saw each producer's values in order.
func TestHammer(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		producers, consumers int
		capacity             int
	}{
		{"mpsc", 8, 1, 64},
		{"mpmc", 6, 3, 16},
		{"tiny", 4, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			perProducer := 20000
			if testing.Short() || raceEnabled {
				perProducer = 3000
			}
			q := New[uint64](tc.capacity)
			seen := make([]atomic.Uint32, tc.producers*perProducer)
			var popped atomic.Int64
			total := int64(tc.producers * perProducer)

			var wg sync.WaitGroup
			for p := 0; p < tc.producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perProducer; i++ {
						v := uint64(p)<<32 | uint64(i)
						for !q.Push(v) {
							runtime.Gosched()
						}
					}
				}()
			}
			errs := make(chan string, tc.consumers)
			for c := 0; c < tc.consumers; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					last := make([]int64, tc.producers)
					for i := range last {
						last[i] = -1
					}
					batch := make([]uint64, 7)
					for popped.Load() < total {
						n := q.PopBatch(batch)
						if n == 0 {
							runtime.Gosched()
							continue
						}
						for _, v := range batch[:n] {
							p, i := int(v>>32), int64(uint32(v))
							if i <= last[p] {
								errs <- "a consumer saw a producer's values out of order"
								return
							}
							last[p] = i
							seen[p*perProducer+int(i)].Add(1)
						}
						popped.Add(int64(n))
					}
				}()
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
			for i := range seen {
				if n := seen[i].Load(); n != 1 {
					t.Fatalf("value %d popped %d times; want 1", i, n)
				}
			}
			if q.Len() != 0 {
				t.Fatalf("Len() = %d after draining", q.Len())
			}
		})
	}
}

func BenchmarkPushPop(b *testing.B) {
	b.ReportAllocs()
	q := New[int](1024)
	for i := 0; i < b.N; i++ {
		q.Push(i)
		q.Pop()
	}
}

func BenchmarkContended(b *testing.B) {
	b.ReportAllocs()
	q := New[int](1024)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for !q.Push(1) {
				q.Pop()
			}
			q.Pop()
		}
	})
}
