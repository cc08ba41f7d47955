// Package nodes is the membership of a region's runtime nodes: each node announces itself (its
// forwarding URL, its pool, its weight) in a JetStream key-value bucket with a heartbeat, and
// every gateway watches the bucket to know where it can send a request.
//
// The bucket is the region's own, never a mirror of the home region's: a gateway schedules over
// the nodes of its region, and membership keeps working in an edge region cut off from home.
// Entries are kept in memory storage: a membership that outlives its nodes would only mislead.
// A node that stops announcing (killed, partitioned) drops out after TTL, whether or not the
// server reports its entry's expiry.
package nodes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/internal/kvwatch"
	"github.com/wispfn/wisp/kv/natsnode"
)

const bucket = "wisp_nodes"

// Defaults of Options.
const (
	DefaultTTL       = 6 * time.Second
	DefaultHeartbeat = 2 * time.Second
)

// Member is one runtime node as it announces itself.
type Member struct {
	// URL is the base URL other gateways forward requests to (http://host:port); it also
	// identifies the node.
	URL string `json:"url"`
	// Pool is the resource pool the node's runtime serves.
	Pool string `json:"pool"`
	// Weight is the node's static share of its pool's traffic (its capacity), at least 1.
	Weight int `json:"weight"`
	// Seen is when this node last heard from it (set by Watch).
	Seen time.Time `json:"-"`
}

var poolRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidPool returns nil if name can name a pool: 1 to 63 characters of a-z, 0-9, '-' and '_',
// starting with a letter or digit.
func ValidPool(name string) error {
	if poolRe.MatchString(name) {
		return nil
	}
	return fmt.Errorf("pool %q: use 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit", name)
}

// Validate says what is wrong with m, if anything.
func (m Member) Validate() error {
	u, err := url.Parse(m.URL)
	switch {
	case err != nil:
		return fmt.Errorf("node url %q: %w", m.URL, err)
	case u.Scheme != "http" || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
		return fmt.Errorf("node url %q: want http://HOST:PORT", m.URL)
	case m.Weight < 1 || m.Weight > 1000:
		return fmt.Errorf("node weight %d: want 1 to 1000", m.Weight)
	}
	return ValidPool(m.Pool)
}

// key names a member's entry: its URL hashed into the key alphabet.
func key(u string) string {
	sum := sha256.Sum256([]byte(u))
	return "n." + hex.EncodeToString(sum[:12])
}

// Options tune a Directory; zero fields take the defaults.
type Options struct {
	// TTL is how long a member counts without a heartbeat.
	TTL time.Duration
	// Heartbeat is how often Announce repeats a member's entry; below TTL/2.
	Heartbeat time.Duration
}

// Directory reads and writes the membership of the node's region.
type Directory struct {
	node *natsnode.Node
	kv   jetstream.KeyValue
	ttl  time.Duration
	beat time.Duration
}

// Open opens (creating if needed) the region's membership bucket on n.
func Open(ctx context.Context, n *natsnode.Node, o Options) (*Directory, error) {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.TTL < time.Second || o.Heartbeat <= 0 || o.Heartbeat*2 > o.TTL {
		return nil, fmt.Errorf("membership ttl %s, heartbeat %s: want a ttl of at least 1s and a heartbeat of at most half of it", o.TTL, o.Heartbeat)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "Wisp runtime nodes of this region",
		History:     1,
		TTL:         o.TTL,
		Storage:     jetstream.MemoryStorage,
	}
	kv, err := n.JetStream().CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = n.JetStream().KeyValue(ctx, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open the node membership bucket: %w", err)
	}
	return &Directory{node: n, kv: kv, ttl: o.TTL, beat: o.Heartbeat}, nil
}

// Announce puts m in the membership now and every heartbeat until ctx ends; then it removes
// it (best effort: otherwise it expires after the TTL). A failed first put is returned; later
// failures (NATS unreachable for a while) are retried at the next heartbeat.
func (d *Directory) Announce(ctx context.Context, m Member) (done <-chan struct{}, err error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	k := key(m.URL)
	if _, err := d.kv.Put(ctx, k, b); err != nil {
		return nil, fmt.Errorf("cannot announce node %s: %w", m.URL, err)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		t := time.NewTicker(d.beat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				dctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = d.kv.Delete(dctx, k)
				cancel()
				return
			case <-d.node.Done():
				return
			case <-t.C:
				pctx, cancel := context.WithTimeout(ctx, d.beat)
				_, _ = d.kv.Put(pctx, k, b)
				cancel()
			}
		}
	}()
	return ch, nil
}

// Watch calls onChange with the whole membership, sorted by URL, whenever it changes: a
// member joins, leaves, changes, or misses its heartbeats for the TTL. The first call comes
// before Watch returns (the membership as it stands); later calls come from one goroutine,
// until ctx ends.
func (d *Directory) Watch(ctx context.Context, onChange func([]Member)) error {
	w := &watcher{ttl: d.ttl, members: map[string]Member{}, onChange: onChange}
	ready := make(chan struct{})
	var once sync.Once
	ended := make(chan struct{})
	err := kvwatch.Start(ctx, d.node, d.kv, kvwatch.Options{}, func(u kvwatch.Update) bool {
		w.update(u)
		if u.Kind == kvwatch.Ready {
			once.Do(func() { close(ready) })
		}
		return true
	}, func() { close(ended) })
	if err != nil {
		return fmt.Errorf("cannot watch the node membership: %w", err)
	}
	select {
	case <-ready:
	case <-ended:
		return fmt.Errorf("the node membership watch ended: %w", context.Cause(ctx))
	case <-ctx.Done():
		return ctx.Err()
	}
	go func() { // members that stop announcing expire even if the server says nothing
		t := time.NewTicker(d.ttl / 4)
		defer t.Stop()
		for {
			select {
			case <-ended:
				return
			case now := <-t.C:
				w.expire(now)
			}
		}
	}()
	return nil
}

type watcher struct {
	ttl      time.Duration
	mu       sync.Mutex
	members  map[string]Member // by key
	ready    bool
	onChange func([]Member)
}

func (w *watcher) update(u kvwatch.Update) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch u.Kind {
	case kvwatch.Reset:
		w.ready = false
		clear(w.members)
		return
	case kvwatch.Ready:
		w.ready = true
		w.publish()
		return
	}
	e := u.Entry
	if e.Operation() != jetstream.KeyValuePut {
		if _, ok := w.members[e.Key()]; ok {
			delete(w.members, e.Key())
			w.publish()
		}
		return
	}
	var m Member
	if err := json.Unmarshal(e.Value(), &m); err != nil || m.Validate() != nil || key(m.URL) != e.Key() {
		return // not an announcement of ours: ignored
	}
	// Expiry counts from arrival on this node's clock, never from the writer's: clocks of
	// different machines disagree. An entry older than the TTL is gone from the bucket (its
	// max age), so the state at the start of a watch holds only live members.
	m.Seen = time.Now()
	old, had := w.members[e.Key()]
	w.members[e.Key()] = m
	if !had || old.Pool != m.Pool || old.Weight != m.Weight {
		w.publish()
	}
}

func (w *watcher) expire(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	for k, m := range w.members {
		if now.Sub(m.Seen) > w.ttl {
			delete(w.members, k)
			changed = true
		}
	}
	if changed {
		w.publish()
	}
}

// publish hands the membership to onChange; callers hold w.mu, which keeps calls in order.
func (w *watcher) publish() {
	if !w.ready {
		return
	}
	ms := make([]Member, 0, len(w.members))
	for _, m := range w.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Member) int {
		if a.URL < b.URL {
			return -1
		}
		if a.URL > b.URL {
			return 1
		}
		return 0
	})
	w.onChange(ms)
}
