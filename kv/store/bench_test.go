package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/wispfn/wisp/kv/natsnode"
)

// BenchmarkGet reads one 100-byte key through the embedded server (in-process connection).
// Its correctness twin is TestPutGet.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s := newStore(b)
	put(b, s, "bench.key", string(make([]byte, 100)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "bench.key"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMany reads 16 keys in one request. Its correctness twin is TestGetMany.
func BenchmarkGetMany(b *testing.B) {
	ctx := context.Background()
	s := newStore(b)
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench.%d", i)
		put(b, s, keys[i], string(make([]byte, 100)))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetMany(ctx, keys); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
}

// BenchmarkPut writes one 100-byte key through the embedded server, on disk with each sync
// policy and in memory. Its correctness twin is TestPutGet.
func BenchmarkPut(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sync    string
		storage string
	}{
		{"file/sync=always", "always", StorageFile},
		{"file/sync=2m", "2m", StorageFile},
		{"memory", "", StorageMemory},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			s := open(b, startNode(b, natsnode.Options{Sync: bc.sync}), "bench", Options{Storage: bc.storage})
			value := make([]byte, 100)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Put(ctx, "bench.key", value, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
