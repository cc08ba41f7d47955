// Package queue is the lock-free bounded FIFO under BytedRing's submission and completion rings.
//
// A Queue is Dmitry Vyukov's bounded multi-producer multi-consumer array queue: every cell carries
// a sequence number that says whether it is free for the producer of a given lap or full for its
// consumer, so producers and consumers claim positions with one compare-and-swap each and never
// take a lock. Values are published by the cell's sequence store, which is what the race detector
// sees as the synchronizing operation.
package queue

import (
	"sync/atomic"
)

// cacheLine separates the producer and consumer positions so they do not share a cache line.
const cacheLine = 64

// Queue is a bounded FIFO that any number of goroutines may push to and pop from concurrently.
// The zero value is not usable: call New.
type Queue[T any] struct {
	_     [cacheLine]byte
	tail  atomic.Uint64 // next position to push
	_     [cacheLine - 8]byte
	head  atomic.Uint64 // next position to pop
	_     [cacheLine - 8]byte
	mask  uint64
	cells []cell[T]
}

type cell[T any] struct {
	seq atomic.Uint64
	val T
}

// New returns an empty queue holding at least capacity values (rounded up to a power of two,
// at least 2).
func New[T any](capacity int) *Queue[T] {
	n := 2
	for n < capacity {
		n <<= 1
	}
	q := &Queue[T]{mask: uint64(n - 1), cells: make([]cell[T], n)}
	for i := range q.cells {
		q.cells[i].seq.Store(uint64(i))
	}
	return q
}

// Cap returns how many values the queue holds when full.
func (q *Queue[T]) Cap() int { return len(q.cells) }

// Len returns the number of values pushed and not yet popped. Under concurrent use it is a
// snapshot that may already be stale, and it may count a value whose push has claimed its cell
// but not yet published it.
func (q *Queue[T]) Len() int {
	for {
		head := q.head.Load()
		tail := q.tail.Load()
		if q.head.Load() == head {
			return int(tail - head)
		}
	}
}

// Push appends v and reports true, or reports false without blocking if the queue is full.
func (q *Queue[T]) Push(v T) bool {
	pos := q.tail.Load()
	for {
		c := &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq - pos); {
		case dif == 0:
			if q.tail.CompareAndSwap(pos, pos+1) {
				c.val = v
				c.seq.Store(pos + 1)
				return true
			}
			pos = q.tail.Load()
		case dif < 0:
			return false // the cell still holds the value of the previous lap: full
		default:
			pos = q.tail.Load() // another producer took pos
		}
	}
}

// Pop removes and returns the oldest value, or reports false without blocking if no value is
// published yet.
func (q *Queue[T]) Pop() (T, bool) {
	pos := q.head.Load()
	for {
		c := &q.cells[pos&q.mask]
		seq := c.seq.Load()
		switch dif := int64(seq - (pos + 1)); {
		case dif == 0:
			if q.head.CompareAndSwap(pos, pos+1) {
				v := c.val
				var zero T
				c.val = zero // do not keep the value reachable from the queue
				c.seq.Store(pos + q.mask + 1)
				return v, true
			}
			pos = q.head.Load()
		case dif < 0:
			var zero T
			return zero, false // empty, or the next value is claimed but not yet published
		default:
			pos = q.head.Load() // another consumer took pos
		}
	}
}

// PopBatch pops up to len(dst) values into dst, oldest first, and returns how many it popped.
func (q *Queue[T]) PopBatch(dst []T) int {
	for i := range dst {
		v, ok := q.Pop()
		if !ok {
			return i
		}
		dst[i] = v
	}
	return len(dst)
}
