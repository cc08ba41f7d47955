package sched

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPick is a Pick and its Done on the real clock; TestPickDoesNotAllocate is its twin.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			s, _ := newSched(b, Config{Now: time.Now}, benchMembers(n)...)
			b.ReportAllocs()
			for b.Loop() {
				t, err := s.Pick("t")
				if err != nil {
					b.Fatal(err)
				}
				t.Done(time.Millisecond, true)
			}
		})
	}
}

// BenchmarkPickParallel is BenchmarkPick on every P at once, all in one pool of 16 targets.
func BenchmarkPickParallel(b *testing.B) {
	s, _ := newSched(b, Config{Now: time.Now}, benchMembers(16)...)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, err := s.Pick("t")
			if err != nil {
				b.Error(err)
				return
			}
			t.Done(time.Millisecond, true)
		}
	})
}
