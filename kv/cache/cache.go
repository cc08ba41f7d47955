// Package cache is the Local Cache: a per-node, size-bounded read-through cache in front of one
// namespace of the Global KV, kept fresh by watching the namespace.
//
// # Staleness
//
// A write through this cache drops the key's entry before the write returns, so the next read
// on this node goes to the store. A write anywhere else — another node, another region —
// reaches this node through its watch of the namespace, which drops the entry: until the watch
// delivers the change, reads on this node return the previous value. kv/README.md gives the
// measured delay. In an edge region the watch follows the region's mirror, so a cache there is
// never staler than a read of the mirror itself, plus that delay.
//
// Misses are cached too: a key found missing is remembered as missing, and a later write of it
// drops that like any entry.
//
// # When NATS is lost
//
// While the connection to NATS is down, the cache keeps serving the entries it has, each for
// at most Options.TTL after it was read from the store: a change made elsewhere during the
// outage cannot reach this node, so TTL bounds how stale a hit can be. Misses go to the
// store, which fails fast with store.ErrUnavailable, and nothing new is cached. When the
// connection comes back, the watch starts over (store.OpReset) and the cache drops every entry,
// since changes made during the outage may never be reported; it caches again once the watch
// is back (store.OpReady).
package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/maypok86/otter/v2"

	"github.com/wispfn/wisp/kv/store"
)

const (
	// DefaultMaxBytes bounds a cache's keys and values unless Options.MaxBytes says otherwise.
	DefaultMaxBytes = 32 << 20
	// DefaultTTL is how long an entry is served unless Options.TTL says otherwise.
	DefaultTTL = time.Minute

	// entryOverhead is what an entry is taken to cost beyond its key and value bytes.
	entryOverhead = 96
	// stripes is the number of locks that order fills against invalidations.
	stripes = 256
)

// Options configures New. The zero value means the documented defaults.
type Options struct {
	// MaxBytes bounds the memory of the cached entries, counted as key bytes plus value
	// bytes plus 96 per entry; 0 means DefaultMaxBytes. Less used entries are evicted first.
	MaxBytes int64

	// TTL is how long an entry is served after it was read from the store; 0 means
	// DefaultTTL. Changes reported by the watch drop entries sooner; TTL bounds how stale a
	// hit can be when they cannot be reported (see the package documentation).
	TTL time.Duration

	// Logf, if set, receives the cache's notices (watch restarts). Nil discards them.
	Logf func(format string, args ...any)
}

// item is a cached value, or a cached miss (rev 0).
type item struct {
	value   []byte
	rev     uint64
	created time.Time
}

// stripe orders the fills and invalidations of the keys that hash to it: an invalidation
// bumps gen under mu, and a fill that began before the bump is dropped.
type stripe struct {
	mu  sync.Mutex
	gen uint64
	_   [48]byte // keep stripes on separate cache lines
}

// Cache is a Local Cache in front of one namespace. It is a store.Store itself: reads are
// served from memory when possible, everything else goes to the store. Values it returns are
// shared by every reader of the key: treat them as read-only. It is safe for concurrent use;
// Close stops it.
type Cache struct {
	s    store.Store
	ns   string
	ttl  time.Duration
	logf func(string, ...any)

	entries *otter.Cache[string, *item]
	seed    maphash.Seed
	stripes [stripes]stripe
	live    atomic.Bool // the watch is up: fills may be kept

	set                                 *metrics.Set
	hits, misses, invalidations, resets *metrics.Counter
	changes                             *metrics.Counter
	sizeEvictions, expiryEvictions      *metrics.Counter
	cancel                              context.CancelFunc
	done                                chan struct{}
	closeOnce                           sync.Once
}

// New starts a cache in front of s and the watch that keeps it fresh. The cache registers
// its metrics, labelled with s's namespace, in the default VictoriaMetrics set:
//
//	wisp_kv_cache_hits_total{namespace="…"}          reads served from memory (misses cached as such included)
//	wisp_kv_cache_misses_total{namespace="…"}        reads that went to the store
//	wisp_kv_cache_evictions_total{namespace="…",cause="size"}     entries evicted to stay under MaxBytes
//	wisp_kv_cache_evictions_total{namespace="…",cause="expired"}  entries dropped after TTL
//	wisp_kv_cache_invalidations_total{namespace="…"} entries dropped because their key changed
//	wisp_kv_cache_changes_total{namespace="…"}       changes to the namespace received from the watch
//	wisp_kv_cache_resets_total{namespace="…"}        times the watch started over and every entry was dropped
//	wisp_kv_cache_bytes{namespace="…"}               memory of the entries, counted as for MaxBytes
//	wisp_kv_cache_entries{namespace="…"}             number of entries
//
// Only one cache per namespace should be open at a time in a process: their metrics would
// share names.
func New(s store.Store, o Options) (*Cache, error) {
	switch {
	case o.MaxBytes < 0:
		return nil, fmt.Errorf("cannot create cache of namespace %q: %w max bytes %d: must not be negative (0 means %d)", s.Namespace(), store.ErrInvalid, o.MaxBytes, DefaultMaxBytes)
	case o.TTL < 0:
		return nil, fmt.Errorf("cannot create cache of namespace %q: %w ttl %s: must not be negative (0 means %s)", s.Namespace(), store.ErrInvalid, o.TTL, DefaultTTL)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	ns := s.Namespace()
	c := &Cache{
		s:    s,
		ns:   ns,
		ttl:  o.TTL,
		logf: o.Logf,
		seed: maphash.MakeSeed(),
		set:  metrics.NewSet(),
		done: make(chan struct{}),
	}
	c.hits = c.set.NewCounter(fmt.Sprintf(`wisp_kv_cache_hits_total{namespace=%q}`, ns))
	c.misses = c.set.NewCounter(fmt.Sprintf(`wisp_kv_cache_misses_total{namespace=%q}`, ns))
	c.sizeEvictions = c.set.NewCounter(fmt.Sprintf(`wisp_kv_cache_evictions_total{namespace=%q,cause="size"}`, ns))
	c.expiryEvictions = c.set.NewCounter(fmt.Sprintf(`wisp_kv_cache_evictions_total{namespace=%q,cause="expired"}`, ns))
	c.invalidations = c.set.NewCounter(fmt.Sprintf(`wisp_kv_cache_invalidations_total{namespace=%q}`, ns))
	c.changes = c.set.NewCounter(fmt.Sprintf(`wisp_kv_cache_changes_total{namespace=%q}`, ns))
	c.resets = c.set.NewCounter(fmt.Sprintf(`wisp_kv_cache_resets_total{namespace=%q}`, ns))
	entries, err := otter.New(&otter.Options[string, *item]{
		MaximumWeight:    uint64(o.MaxBytes),
		Weigher:          weigh,
		ExpiryCalculator: otter.ExpiryWriting[string, *item](o.TTL),
		OnAtomicDeletion: c.deleted,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create cache of namespace %q: %w", ns, err)
	}
	c.entries = entries
	c.set.NewGauge(fmt.Sprintf(`wisp_kv_cache_bytes{namespace=%q}`, ns), func() float64 { return float64(c.entries.WeightedSize()) })
	c.set.NewGauge(fmt.Sprintf(`wisp_kv_cache_entries{namespace=%q}`, ns), func() float64 { return float64(c.entries.EstimatedSize()) })

	ctx, cancel := context.WithCancel(context.Background())
	events, err := s.Watch(ctx, "", store.WatchOptions{UpdatesOnly: true})
	if err != nil {
		cancel()
		c.entries.StopAllGoroutines()
		return nil, fmt.Errorf("cannot create cache of namespace %q: %w", ns, err)
	}
	c.cancel = cancel
	metrics.RegisterSet(c.set)
	go c.follow(events)
	return c, nil
}

func weigh(key string, it *item) uint32 {
	return uint32(min(len(key)+len(it.value)+entryOverhead, 1<<32-1))
}

// deleted counts evictions; it runs under the entry's bucket lock.
func (c *Cache) deleted(e otter.DeletionEvent[string, *item]) {
	switch e.Cause {
	case otter.CauseOverflow:
		c.sizeEvictions.Inc()
	case otter.CauseExpiration:
		c.expiryEvictions.Inc()
	}
}

// follow applies the watch's events until the watch ends: at Close, or when the store's
// node closes. Then the cache stops caching.
func (c *Cache) follow(events <-chan store.Event) {
	defer close(c.done)
	for ev := range events {
		switch ev.Op {
		case store.OpPut, store.OpDelete:
			c.invalidate(ev.Key)
			c.changes.Inc()
		case store.OpReady:
			c.live.Store(true)
		case store.OpReset:
			c.reset()
			if c.logf != nil {
				c.logf("kv cache %s: the watch started over; dropped every entry", c.ns)
			}
		}
	}
	c.reset()
}

func (c *Cache) stripe(key string) *stripe {
	return &c.stripes[maphash.String(c.seed, key)%stripes]
}

// generation returns the stripe generation a fill of key must still find to be kept.
func (c *Cache) generation(key string) uint64 {
	s := c.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// fill caches e (a miss if its Revision is 0) as read from the store, unless key changed, or
// the watch was lost, since the read began (gen).
func (c *Cache) fill(key string, gen uint64, e store.Entry) {
	s := c.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || !c.live.Load() {
		return
	}
	c.entries.Set(key, &item{value: e.Value, rev: e.Revision, created: e.Created})
}

// invalidate drops key's entry and any fill of it in flight.
func (c *Cache) invalidate(key string) {
	s := c.stripe(key)
	s.mu.Lock()
	s.gen++
	_, dropped := c.entries.Invalidate(key)
	s.mu.Unlock()
	if dropped {
		c.invalidations.Inc()
	}
}

// reset drops every entry and every fill in flight, and keeps no fill until the watch is
// ready again.
func (c *Cache) reset() {
	c.live.Store(false)
	for i := range c.stripes {
		s := &c.stripes[i]
		s.mu.Lock()
		s.gen++
		s.mu.Unlock()
	}
	c.entries.InvalidateAll()
	c.resets.Inc()
}

// Close stops the watch and drops every entry and the cache's metrics. The store stays open.
// Reads after Close go to the store. Close is safe to call more than once.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.done
		metrics.UnregisterSet(c.set, true)
		c.entries.StopAllGoroutines()
	})
}

// Namespace returns the store's namespace.
func (c *Cache) Namespace() string { return c.ns }

// Get returns the key's value from memory if it is there, else from the store, and keeps
// it. A hit allocates nothing; a key known to be missing is a hit that returns
// store.ErrNotFound.
func (c *Cache) Get(ctx context.Context, key string) (store.Entry, error) {
	if it, ok := c.entries.GetIfPresent(key); ok {
		c.hits.Inc()
		if it.rev == 0 {
			return store.Entry{}, store.ErrNotFound
		}
		return store.Entry{Key: key, Value: it.value, Revision: it.rev, Created: it.created}, nil
	}
	c.misses.Inc()
	gen := c.generation(key)
	e, err := c.s.Get(ctx, key)
	if err == nil || errors.Is(err, store.ErrNotFound) {
		c.fill(key, gen, e)
	}
	return e, err
}

// GetMany is store.Store.GetMany with hits served from memory: the misses go to the store in
// one request.
func (c *Cache) GetMany(ctx context.Context, keys []string) ([]store.Entry, error) {
	out := make([]store.Entry, len(keys))
	var missed []int
	for i, k := range keys {
		if it, ok := c.entries.GetIfPresent(k); ok {
			c.hits.Inc()
			if it.rev != 0 {
				out[i] = store.Entry{Key: k, Value: it.value, Revision: it.rev, Created: it.created}
			}
			continue
		}
		missed = append(missed, i)
	}
	if len(missed) == 0 {
		return out, nil
	}
	c.misses.Add(len(missed))
	gens := make([]uint64, len(missed))
	missedKeys := make([]string, len(missed))
	for j, i := range missed {
		missedKeys[j] = keys[i]
		gens[j] = c.generation(keys[i])
	}
	got, err := c.s.GetMany(ctx, missedKeys)
	if err != nil {
		return nil, err
	}
	for j, i := range missed {
		out[i] = got[j]
		c.fill(keys[i], gens[j], got[j])
	}
	return out, nil
}

// Put writes through to the store and drops the key's entry.
func (c *Cache) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	defer c.invalidate(key)
	return c.s.Put(ctx, key, value, ttl)
}

// Create writes through to the store and drops the key's entry.
func (c *Cache) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	defer c.invalidate(key)
	return c.s.Create(ctx, key, value, ttl)
}

// Update writes through to the store and drops the key's entry.
func (c *Cache) Update(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error) {
	defer c.invalidate(key)
	return c.s.Update(ctx, key, value, revision, ttl)
}

// Delete deletes through the store and drops the key's entry.
func (c *Cache) Delete(ctx context.Context, key string, revision uint64) error {
	defer c.invalidate(key)
	return c.s.Delete(ctx, key, revision)
}

// Keys lists keys from the store; listings are not cached.
func (c *Cache) Keys(ctx context.Context, prefix string) ([]string, error) {
	return c.s.Keys(ctx, prefix)
}

// Watch watches the store.
func (c *Cache) Watch(ctx context.Context, prefix string, o store.WatchOptions) (<-chan store.Event, error) {
	return c.s.Watch(ctx, prefix, o)
}
