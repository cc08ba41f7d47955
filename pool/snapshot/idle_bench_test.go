package snapshot_test

import (
	"context"
	"testing"
	"time"

	"github.com/wispfn/wisp/pool/abi"
)

// BenchmarkWarmCallAfterIdle measures one warm request to a restored hello instance (a
// wisp_handle call, nothing else) when the calls come back to back, after the thread slept
// 10 ms, and after it spent 10 ms sweeping 1 MiB of other memory. Only the call is timed. On a
// machine whose caches survive a short sleep the first two are equal; where they are not
// (a virtual machine whose core runs other work while this one idles), the gap between them
// is what every request to a lightly loaded server pays, cold starts included, and the
// third shows that evicted caches alone account for it (docs/RATIONALE.md).
func BenchmarkWarmCallAfterIdle(b *testing.B) {
	g := coldGuests()[2] // hello, warmed up
	rt := newRuntime(b)
	restore, _ := snapshotStarter(b, rt, g)
	ctx := context.Background()
	mod, err := restore(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer mod.Close(ctx)
	enc := abi.AppendRequest(nil, &helloRequest)
	res, err := mod.ExportedFunction("wisp_alloc").Call(ctx, uint64(len(enc)))
	if err != nil || !mod.Memory().Write(uint32(res[0]), enc) {
		b.Fatalf("wisp_alloc: %v", err)
	}
	handle := mod.ExportedFunction("wisp_handle")
	stack := make([]uint64, 2)
	other := make([]byte, 1<<20)
	for _, gap := range []struct {
		name string
		wait func()
	}{
		{"back-to-back", nil},
		{"after-sleep-10ms", func() { time.Sleep(10 * time.Millisecond) }},
		{"after-sweep-10ms", func() {
			for end := time.Now().Add(10 * time.Millisecond); time.Now().Before(end); {
				for i := 0; i < len(other); i += 64 {
					other[i]++
				}
			}
		}},
	} {
		b.Run(gap.name, func(b *testing.B) {
			for b.Loop() {
				if gap.wait != nil {
					b.StopTimer()
					gap.wait()
					b.StartTimer()
				}
				stack[0], stack[1] = res[0], uint64(len(enc))
				if err := handle.CallWithStack(ctx, stack); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
