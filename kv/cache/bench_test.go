package cache

import (
	"context"
	"testing"

	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/store"
)

func benchCache(b *testing.B) *Cache {
	s := openStore(b, startNode(b, natsnode.Options{}), "bench")
	put(b, s, "bench.key", string(make([]byte, 100)))
	c := newCache(b, s, Options{})
	if got := get(b, c, "bench.key"); len(got) != 100 {
		b.Fatalf("got %d bytes; want 100", len(got))
	}
	get(b, c, "bench.missing")
	return c
}

// BenchmarkHit reads a cached 100-byte value. Its correctness twin is TestReadThrough.
func BenchmarkHit(b *testing.B) {
	ctx := context.Background()
	c := benchCache(b)
	misses := c.misses.Get()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "bench.key"); err != nil {
			b.Fatal(err)
		}
	}
	if c.misses.Get() != misses {
		b.Fatalf("%d misses during the benchmark; want only hits", c.misses.Get()-misses)
	}
}

// BenchmarkHitMissing reads a key cached as missing.
func BenchmarkHitMissing(b *testing.B) {
	ctx := context.Background()
	c := benchCache(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "bench.missing"); err != store.ErrNotFound {
			b.Fatal(err)
		}
	}
}

// BenchmarkHitParallel reads a cached value from every P.
func BenchmarkHitParallel(b *testing.B) {
	ctx := context.Background()
	c := benchCache(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, "bench.key"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
