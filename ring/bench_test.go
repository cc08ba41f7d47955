package ring_test

import (
	"context"
	"testing"

	"github.com/wispfn/wisp/ring"
)

// The guest benchmarks run each export of the test guest as export(b.N), in one request: b.N
// hostcall round trips through the Go SDK, the ring and a provider, the loop running inside the
// guest. Each runs twice: with wazero's close-on-context-done, as the pool compiles guests, and
// without it. With it, wazero calls out to Go at every loop iteration of guest code to check for
// termination, which makes Go guest code itself an order of magnitude slower (BenchmarkGuestLoop)
// and dwarfs the ring's own cost.
func benchGuest(b *testing.B, export, setup string) {
	for _, mode := range []struct {
		name          string
		noCloseOnDone bool
	}{{"close-on-done", false}, {"plain", true}} {
		b.Run(mode.name, func(b *testing.B) {
			n := newNode(b, nodeConfig{noCloseOnDone: mode.noCloseOnDone, limits: ring.Limits{MaxHostcalls: 1 << 30, MaxDetached: 1 << 16}})
			in := n.instantiate(n.deploy("bench", testGuest(b), ring.FunctionConfig{Namespace: "bench"}))
			defer in.close()
			if setup != "" {
				in.call(setup)
			}
			fn := in.mod.ExportedFunction(export)
			ctx := in.ring.Begin(context.Background())
			defer in.ring.End()
			if _, err := fn.Call(ctx, 100); err != nil { // warm up: the first calls allocate
				b.Fatal(err)
			}
			b.ReportAllocs()
			w0 := metricValue(b, "wisp_ring_wakeups_total")
			b.ResetTimer()
			res, err := fn.Call(ctx, uint64(b.N))
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res[0] != 0 {
				b.Fatalf("%d of %d calls failed", res[0], b.N)
			}
			b.ReportMetric((metricValue(b, "wisp_ring_wakeups_total")-w0)/float64(b.N), "wakeups/op")
		})
	}
}

// BenchmarkGuestLog is log.Log from a Go guest: submit, the log provider's batched write to the
// function's stream, wait (the guest parks until the provider completes), read.
func BenchmarkGuestLog(b *testing.B) { benchGuest(b, "bench_log", "") }

// BenchmarkGuestLogDetached is log.Info: one submit, no completion to wait for.
func BenchmarkGuestLogDetached(b *testing.B) { benchGuest(b, "bench_log_detached", "") }

// BenchmarkGuestKVGet is kv.Get of a key held by the node's Local Cache.
func BenchmarkGuestKVGet(b *testing.B) {
	benchGuest(b, "bench_kv_get", "/kv?key=bench&put=value")
}

// BenchmarkGuestRawLog is BenchmarkGuestLog without the SDK: the guest calls submit, wait and
// read itself, with a fixed payload and no allocation.
func BenchmarkGuestRawLog(b *testing.B) { benchGuest(b, "bench_raw_log", "") }

// BenchmarkGuestLoop is no hostcall at all: 100 iterations of an arithmetic loop per op, the
// scale of the close-on-context-done cost.
func BenchmarkGuestLoop(b *testing.B) { benchGuest(b, "bench_compute", "") }
