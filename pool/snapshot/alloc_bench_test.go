package snapshot_test

import (
	"context"
	"testing"
)

// BenchmarkGuestAllocation measures a Go guest's heap allocation under wazero: one exported
// call making n 64-byte objects (n = 0 is the bare call). Its ns/alloc is why the SDK builds a
// request in as few allocations as it can (docs/RATIONALE.md, "Where a warm request's time
// goes").
func BenchmarkGuestAllocation(b *testing.B) {
	rt := plainRuntime(b)
	mod := start(b, rt, guest(b))
	fn := mod.ExportedFunction("allocate")
	ctx := context.Background()
	for _, n := range []uint64{0, 1, 16} {
		b.Run(map[uint64]string{0: "call", 1: "alloc1", 16: "alloc16"}[n], func(b *testing.B) {
			b.ReportAllocs()
			stack := []uint64{n}
			for b.Loop() {
				stack[0] = n
				if err := fn.CallWithStack(ctx, stack); err != nil {
					b.Fatal(err)
				}
			}
			if n > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/alloc")
			}
		})
	}
}
