package registry

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/wispfn/wisp/kv/natsnode"
)

// syncPolicies are the store durability policies the write benchmarks compare.
var syncPolicies = []string{"always", "2m"}

// Correctness twin: TestDeployGetRoundTrip.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	r := newRegistry(b)
	digest := putCode(b, r, module(1, 1000))
	deploy(b, r, Function{Name: "bench", Digest: digest, Route: "/bench", Env: map[string]string{"A": "1"}})
	b.ReportAllocs()
	for b.Loop() {
		f, err := r.Get(ctx, "bench")
		if err != nil || f.Version != 1 {
			b.Fatalf("Get: %+v, %v", f, err)
		}
	}
}

// Correctness twin: TestCodeRoundTrip (same module size).
func BenchmarkPutCode(b *testing.B) {
	ctx := context.Background()
	wasm := module(3, 2<<20)
	for _, sync := range syncPolicies {
		b.Run("new-2MiB/sync="+sync, func(b *testing.B) {
			r := openRegistry(b, startNode(b, natsnode.Options{Sync: sync}))
			var i uint64
			b.SetBytes(int64(len(wasm)))
			b.ReportAllocs()
			for b.Loop() {
				i++
				binary.LittleEndian.PutUint64(wasm[8:], i) // a new module, a new digest
				if _, err := r.PutCode(ctx, wasm); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("existing-2MiB", func(b *testing.B) {
		r := newRegistry(b)
		putCode(b, r, wasm)
		b.SetBytes(int64(len(wasm)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.PutCode(ctx, wasm); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Correctness twin: TestCodeRoundTrip.
func BenchmarkCode(b *testing.B) {
	ctx := context.Background()
	r := newRegistry(b)
	wasm := module(3, 2<<20)
	digest := putCode(b, r, wasm)
	b.SetBytes(int64(len(wasm)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := r.Code(ctx, digest)
		if err != nil || len(got) != len(wasm) {
			b.Fatalf("Code: %d bytes, %v", len(got), err)
		}
	}
}

// Correctness twin: TestVersionsIncrease.
func BenchmarkDeploy(b *testing.B) {
	ctx := context.Background()
	for _, sync := range syncPolicies {
		b.Run("sync="+sync, func(b *testing.B) {
			r := openRegistry(b, startNode(b, natsnode.Options{Sync: sync}))
			digest := putCode(b, r, module(1, 1000))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Deploy(ctx, Function{Name: "bench", Digest: digest}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
