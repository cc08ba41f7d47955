package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/store"
)

func startNode(tb testing.TB, o natsnode.Options) *natsnode.Node {
	tb.Helper()
	if o.Dir == "" && o.URL == "" {
		o.Dir = tb.TempDir()
	}
	n, err := natsnode.Start(context.Background(), o)
	if err != nil {
		tb.Fatalf("natsnode.Start: %v", err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}

func openStore(tb testing.TB, n *natsnode.Node, ns string) store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), n, ns, store.Options{})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	return s
}

func newCache(tb testing.TB, s store.Store, o Options) *Cache {
	tb.Helper()
	c, err := New(s, o)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(c.Close)
	// Fills made before the watch is ready are not kept; tests that count hits and
	// invalidations start from a cache that keeps them.
	eventually(tb, "the cache's watch is ready", func() error {
		if !c.live.Load() {
			return errors.New("not live")
		}
		return nil
	})
	return c
}

func put(tb testing.TB, s store.Store, key, value string) uint64 {
	tb.Helper()
	rev, err := s.Put(context.Background(), key, []byte(value), 0)
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return rev
}

// get reads key through c and returns its value, or "<missing>".
func get(tb testing.TB, c store.Store, key string) string {
	tb.Helper()
	e, err := c.Get(context.Background(), key)
	if errors.Is(err, store.ErrNotFound) {
		return "<missing>"
	}
	if err != nil {
		tb.Fatalf("Get(%q): %v", key, err)
	}
	return string(e.Value)
}

// eventually retries f until it succeeds or 10s pass.
func eventually(tb testing.TB, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func reads(c store.Store, key, want string) func() error {
	return func() error {
		e, err := c.Get(context.Background(), key)
		got := string(e.Value)
		if errors.Is(err, store.ErrNotFound) {
			got, err = "<missing>", nil
		}
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("got %q; want %q", got, want)
		}
		return nil
	}
}

func counts(c *Cache) string {
	return fmt.Sprintf("hits %d, misses %d, invalidations %d", c.hits.Get(), c.misses.Get(), c.invalidations.Get())
}

func TestReadThrough(t *testing.T) {
	s := openStore(t, startNode(t, natsnode.Options{}), "rt")
	rev := put(t, s, "k", "v")
	c := newCache(t, s, Options{})

	e1, err := c.Get(context.Background(), "k")
	if err != nil || string(e1.Value) != "v" || e1.Revision != rev || e1.Key != "k" {
		t.Fatalf("first Get: %+v, %v; want k=v@%d", e1, err, rev)
	}
	e2, err := c.Get(context.Background(), "k")
	if err != nil || &e2.Value[0] != &e1.Value[0] || e2.Revision != rev || !e2.Created.Equal(e1.Created) {
		t.Fatalf("second Get: %+v, %v; want the cached entry", e2, err)
	}
	for range 2 {
		if _, err := c.Get(context.Background(), "missing"); err != store.ErrNotFound {
			t.Fatalf("Get of a missing key: %v; want store.ErrNotFound itself", err)
		}
	}
	if got, want := counts(c), "hits 2, misses 2, invalidations 0"; got != want {
		t.Fatalf("got %s; want %s", got, want)
	}
	if _, err := c.Get(context.Background(), "bad key"); !errors.Is(err, store.ErrInvalidKey) {
		t.Fatalf("Get of a bad key: %v; want ErrInvalidKey", err)
	}
	if c.Namespace() != "rt" {
		t.Fatalf("Namespace() = %q", c.Namespace())
	}
}

func TestWritesThroughTheCacheInvalidate(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, openStore(t, startNode(t, natsnode.Options{}), "local"), Options{TTL: time.Hour})
	if got := get(t, c, "k"); got != "<missing>" {
		t.Fatalf("got %q; want <missing>", got)
	}
	rev, err := c.Create(ctx, "k", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "k"); got != "1" {
		t.Fatalf("after Create: got %q; want 1", got)
	}
	if rev, err = c.Update(ctx, "k", []byte("2"), rev, 0); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "k"); got != "2" {
		t.Fatalf("after Update: got %q; want 2", got)
	}
	if _, err := c.Put(ctx, "k", []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "k"); got != "3" {
		t.Fatalf("after Put: got %q; want 3", got)
	}
	if err := c.Delete(ctx, "k", 0); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "k"); got != "<missing>" {
		t.Fatalf("after Delete: got %q; want <missing>", got)
	}
	if keys, err := c.Keys(ctx, ""); err != nil || len(keys) != 0 {
		t.Fatalf("Keys: %q, %v", keys, err)
	}
	if _, err := c.Update(ctx, "k", []byte("x"), rev, 0); !errors.Is(err, store.ErrRevisionMismatch) {
		t.Fatalf("Update of a deleted key: %v; want ErrRevisionMismatch", err)
	}
}

// TestRemoteWritesInvalidate writes through another node's connection (an external client of
// the same server) and measures how long the cache serves the previous value.
//
//	go test -race -run TestRemoteWritesInvalidate -v ./kv/cache/ | grep staleness
func TestRemoteWritesInvalidate(t *testing.T) {
	srv := startNode(t, natsnode.Options{Listen: "127.0.0.1:0"})
	other := openStore(t, startNode(t, natsnode.Options{URL: srv.URL()}), "remote")
	c := newCache(t, openStore(t, srv, "remote"), Options{TTL: time.Hour})

	if got := get(t, c, "k"); got != "<missing>" { // a cached miss
		t.Fatalf("got %q; want <missing>", got)
	}
	const writes = 200
	lags := make([]time.Duration, 0, writes)
	for i := range writes {
		want := fmt.Sprint(i)
		if i > 0 {
			if got := get(t, c, "k"); got != fmt.Sprint(i-1) { // cache the previous value
				t.Fatalf("got %q; want %d", got, i-1)
			}
		}
		put(t, other, "k", want)
		acked := time.Now()
		for reads(c, "k", want)() != nil { // polled finely: eventually's 1ms would round up
			if time.Since(acked) > 10*time.Second {
				t.Fatalf("cache still serves the old value 10s after the remote write of %s", want)
			}
			time.Sleep(20 * time.Microsecond)
		}
		lags = append(lags, time.Since(acked))
	}
	slices.Sort(lags)
	t.Logf("staleness of the Local Cache after a write through another connection, over %d writes: p50 %s, p90 %s, max %s",
		writes, lags[writes/2], lags[writes*9/10], lags[writes-1])
	if c.invalidations.Get() < writes {
		t.Fatalf("%d invalidations; want at least %d", c.invalidations.Get(), writes)
	}

	if err := other.Delete(context.Background(), "k", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cache sees the remote delete", reads(c, "k", "<missing>"))
}

// gatedStore holds Get and GetMany after they have read the store, until released: it makes
// a read finish after a change that happened during it.
type gatedStore struct {
	store.Store
	reading chan struct{} // receives when a read has its result
	release chan struct{}
}

func (g *gatedStore) Get(ctx context.Context, key string) (store.Entry, error) {
	e, err := g.Store.Get(ctx, key)
	g.reading <- struct{}{}
	<-g.release
	return e, err
}

func (g *gatedStore) GetMany(ctx context.Context, keys []string) ([]store.Entry, error) {
	es, err := g.Store.GetMany(ctx, keys)
	g.reading <- struct{}{}
	<-g.release
	return es, err
}

// TestChangeDuringReadIsNotCached: a read that began before a change returns what it read,
// but does not keep it, for values and for misses alike.
func TestChangeDuringReadIsNotCached(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	s := openStore(t, n, "race")
	g := &gatedStore{Store: s, reading: make(chan struct{}), release: make(chan struct{})}
	put(t, s, "v", "old")
	put(t, s, "w", "old")
	c := newCache(t, g, Options{TTL: time.Hour})
	for _, tt := range []struct {
		key, before, after string
		many               bool
	}{
		{"v", "old", "new", false},
		{"m", "<missing>", "created", false},
		{"w", "old", "new", true},
	} {
		got := make(chan string)
		go func() {
			if tt.many {
				es, err := c.GetMany(context.Background(), []string{tt.key})
				if err != nil {
					got <- err.Error()
					return
				}
				got <- string(es[0].Value)
				return
			}
			e, err := c.Get(context.Background(), tt.key)
			if errors.Is(err, store.ErrNotFound) {
				got <- "<missing>"
				return
			}
			got <- string(e.Value)
		}()
		<-g.reading // the read has the old value
		changes := c.changes.Get()
		put(t, s, tt.key, tt.after)
		for c.changes.Get() == changes { // the cache has applied the change
			time.Sleep(time.Millisecond)
		}
		close(g.release)
		if v := <-got; v != tt.before {
			t.Fatalf("read of %q: got %q; want %q", tt.key, v, tt.before)
		}
		g.release = make(chan struct{})
		go func() {
			<-g.reading
			g.release <- struct{}{}
		}()
		if v := get(t, c, tt.key); v != tt.after {
			t.Fatalf("next read of %q: got %q; want %q (the earlier read was kept)", tt.key, v, tt.after)
		}
	}
}

func TestGetMany(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, startNode(t, natsnode.Options{}), "many")
	put(t, s, "a", "1")
	put(t, s, "b", "2")
	c := newCache(t, s, Options{})
	get(t, c, "a")       // cached value
	get(t, c, "missing") // cached miss
	misses := c.misses.Get()
	es, err := c.GetMany(ctx, []string{"a", "b", "missing", "other"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%s=%s@%v", e.Key, e.Value, e.Revision != 0))
	}
	if want := []string{"a=1@true", "b=2@true", "=@false", "=@false"}; !slices.Equal(got, want) {
		t.Fatalf("GetMany: got %q; want %q", got, want)
	}
	if d := c.misses.Get() - misses; d != 2 {
		t.Fatalf("GetMany missed %d keys; want 2 (b, other)", d)
	}
	misses = c.misses.Get()
	if _, err := c.GetMany(ctx, []string{"b", "other"}); err != nil || c.misses.Get() != misses {
		t.Fatalf("second GetMany: %v, %d more misses; want all hits", err, c.misses.Get()-misses)
	}
	if _, err := c.GetMany(ctx, []string{"bad key"}); !errors.Is(err, store.ErrInvalidKey) {
		t.Fatalf("GetMany of a bad key: %v; want ErrInvalidKey", err)
	}
}

func TestSizeBound(t *testing.T) {
	s := openStore(t, startNode(t, natsnode.Options{}), "small")
	const maxBytes = 16 << 10
	value := strings.Repeat("x", 1000)
	for i := range 100 {
		put(t, s, fmt.Sprint("k", i), value)
	}
	c := newCache(t, s, Options{MaxBytes: maxBytes})
	for i := range 100 {
		get(t, c, fmt.Sprint("k", i))
	}
	c.entries.CleanUp()
	if w := c.entries.WeightedSize(); w > maxBytes {
		t.Fatalf("cache holds %d bytes; want at most %d", w, maxBytes)
	}
	if c.sizeEvictions.Get() == 0 {
		t.Fatal("no size evictions counted")
	}
	if got := get(t, c, "k0"); got != value {
		t.Fatalf("an evicted key reads %q", got)
	}
}

func TestTTL(t *testing.T) {
	s := openStore(t, startNode(t, natsnode.Options{}), "ttl")
	put(t, s, "k", "v")
	c := newCache(t, s, Options{TTL: 50 * time.Millisecond})
	get(t, c, "k")
	get(t, c, "k")
	if c.misses.Get() != 1 {
		t.Fatalf("%d misses; want 1", c.misses.Get())
	}
	time.Sleep(100 * time.Millisecond)
	get(t, c, "k")
	if c.misses.Get() != 2 {
		t.Fatalf("%d misses after the ttl; want 2", c.misses.Get())
	}
	c.entries.CleanUp()
	eventually(t, "expiry counted", func() error {
		if c.expiryEvictions.Get() == 0 {
			c.entries.CleanUp()
			return errors.New("no expired evictions counted")
		}
		return nil
	})
}

func TestMetrics(t *testing.T) {
	s := openStore(t, startNode(t, natsnode.Options{}), "metered")
	put(t, s, "k", "v")
	c := newCache(t, s, Options{})
	get(t, c, "k")
	get(t, c, "k")
	c.entries.CleanUp()
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	for _, want := range []string{
		`wisp_kv_cache_hits_total{namespace="metered"} 1`,
		`wisp_kv_cache_misses_total{namespace="metered"} 1`,
		`wisp_kv_cache_evictions_total{namespace="metered",cause="size"} 0`,
		`wisp_kv_cache_evictions_total{namespace="metered",cause="expired"} 0`,
		`wisp_kv_cache_invalidations_total{namespace="metered"} 0`,
		`wisp_kv_cache_changes_total{namespace="metered"} 0`,
		`wisp_kv_cache_resets_total{namespace="metered"} 0`,
		`wisp_kv_cache_entries{namespace="metered"} 1`,
		`wisp_kv_cache_bytes{namespace="metered"} 98`,
	} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	c.Close()
	c.Close()
	buf.Reset()
	metrics.WritePrometheus(&buf, false)
	if strings.Contains(buf.String(), `namespace="metered"`) {
		t.Fatal("metrics still exported after Close")
	}
	if got := get(t, c, "k"); got != "v" {
		t.Fatalf("Get after Close: %q; want v from the store", got)
	}
}

func TestNewRejects(t *testing.T) {
	s := openStore(t, startNode(t, natsnode.Options{}), "rejects")
	for _, o := range []Options{{MaxBytes: -1}, {TTL: -time.Second}} {
		if _, err := New(s, o); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("New(%+v): %v; want ErrInvalid", o, err)
		}
	}
}

// TestHammer reads a few keys from many goroutines while two other connections write them,
// then checks that the cache agrees with the store once the writes have stopped: a cached
// value that missed its invalidation would stay for the hour-long TTL.
func TestHammer(t *testing.T) {
	ctx := context.Background()
	srv := startNode(t, natsnode.Options{Listen: "127.0.0.1:0"})
	s := openStore(t, srv, "hammer")
	c := newCache(t, s, Options{TTL: time.Hour, MaxBytes: 1 << 20})
	writers := []store.Store{s, openStore(t, startNode(t, natsnode.Options{URL: srv.URL()}), "hammer")}
	keys := []string{"a", "b", "c", "d"}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%16 == 0 {
					time.Sleep(time.Microsecond) // leave the writers some of the machine
				}
				k := keys[rng.IntN(len(keys))]
				if rng.IntN(4) == 0 {
					if _, err := c.GetMany(ctx, []string{k, keys[rng.IntN(len(keys))]}); err != nil {
						t.Error(err)
						return
					}
				} else if _, err := c.Get(ctx, k); err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Error(err)
					return
				}
			}
		}()
	}
	start := time.Now()
	for i := range 400 {
		w := writers[i%2]
		k := keys[i%len(keys)]
		var err error
		if i%7 == 0 {
			err = w.Delete(ctx, k, 0)
		} else {
			_, err = w.Put(ctx, k, []byte(fmt.Sprint(i)), 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("writes done after %s", time.Since(start).Round(time.Millisecond))
	for _, k := range keys {
		want := get(t, s, k)
		eventually(t, "cache agrees with the store on "+k, reads(c, k, want))
	}
	t.Logf("%s", counts(c))
}
