// Package kv is the ring's KV provider: guests get, put (with a time-to-live), delete and list
// keys of their function's namespace in the node's KV store (the Local Cache in front of the
// Global KV). A guest names keys only; the namespace comes from the function's configuration,
// so a function cannot name another namespace's keys.
//
// Gets that arrive together, from one guest or many, become one GetMany per namespace. Within a
// batch, calls on a namespace keep the order they were submitted in; calls a guest has not
// waited for may otherwise be served in any order (wait for a put before relying on it).
package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// KV is the store behind the provider. Implementations are safe for concurrent use; a namespace's
// keys are never visible in another namespace. Errors that wrap ErrInvalid reach the guest as
// CodeInvalid, a passed deadline as CodeTimeout, the rest as CodeUnavailable.
//
// Put, Delete and Keys get the submitting request's context. GetMany gets a context without a
// deadline, because one batch serves several requests: the KV must bound it itself.
type KV interface {
	// GetMany returns the current values of keys in namespace: result i is keys[i]'s, with
	// Revision 0 if it does not exist. It should cost one round trip to the backend.
	GetMany(ctx context.Context, namespace string, keys []string) ([]Entry, error)
	// Put writes key. A ttl above zero deletes it that long after the write (at least a second);
	// zero keeps it until deleted.
	Put(ctx context.Context, namespace, key string, value []byte, ttl time.Duration) error
	// Delete deletes key; deleting a key that does not exist succeeds.
	Delete(ctx context.Context, namespace, key string) error
	// Keys returns the keys of namespace that start with prefix ("" for all), sorted.
	Keys(ctx context.Context, namespace, prefix string) ([]string, error)
}

// Entry is a key's value as GetMany returns it.
type Entry struct {
	// Value is read-only: a store may share it with other callers.
	Value []byte
	// Revision identifies the write that stored Value; 0 means the key does not exist.
	Revision uint64
}

// ErrInvalid is wrapped by a KV's errors about malformed input.
var ErrInvalid = errors.New("invalid")

// Operations on the wire (docs/hostcalls.md).
const (
	OpGet    = 1
	OpPut    = 2
	OpDelete = 3
	OpList   = 4
)

// MaxKeyBytes is the longest key a guest may name.
const MaxKeyBytes = 512

// Config configures the provider. Zero fields take their defaults.
type Config struct {
	// Store is the KV the provider serves from. Required.
	Store KV
	// MaxValue caps a value a guest puts, in bytes. Default 1 MiB.
	MaxValue int
	// MaxList caps the keys one list returns. Default 1000.
	MaxList int
	// Workers is how many batches are served at once. Default 4.
	Workers int
}

// Defaults of Config.
const (
	DefaultMaxValue = 1 << 20
	DefaultMaxList  = 1000
	DefaultWorkers  = 4
)

// Provider is the KV provider.
type Provider struct {
	cfg    Config
	ctx    context.Context // ends at Cleanup; bounds batched gets, which serve many requests
	cancel context.CancelFunc
}

var (
	getManyTotal = metrics.GetOrCreateCounter(`wisp_ring_kv_getmany_total`)
	getKeysTotal = metrics.GetOrCreateCounter(`wisp_ring_kv_get_keys_total`)
)

// New returns a KV provider serving from cfg.Store.
func New(cfg Config) *Provider {
	if cfg.MaxValue == 0 {
		cfg.MaxValue = DefaultMaxValue
	}
	if cfg.MaxList == 0 {
		cfg.MaxList = DefaultMaxList
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	return &Provider{cfg: cfg}
}

// Info describes the provider to the ring.
func (p *Provider) Info() ring.ProviderInfo {
	return ring.ProviderInfo{ID: ring.ProviderKV, Name: "kv", MaxPayload: p.cfg.MaxValue + MaxKeyBytes + 32, Workers: p.cfg.Workers}
}

// Provision starts the provider's context.
func (p *Provider) Provision(ring.Env) error {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return nil
}

// Validate checks the configuration.
func (p *Provider) Validate() error {
	switch {
	case p.cfg.Store == nil:
		return errors.New("no store: set Config.Store")
	case p.cfg.MaxValue < 0 || p.cfg.MaxList < 1 || p.cfg.Workers < 1:
		return fmt.Errorf("max value %d, max list %d, workers %d: want them positive",
			p.cfg.MaxValue, p.cfg.MaxList, p.cfg.Workers)
	}
	return nil
}

// Cleanup ends calls to the store still running.
func (p *Provider) Cleanup() error {
	if p.cancel != nil {
		p.cancel()
	}
	return nil
}

// Request is a decoded KV submission.
type Request struct {
	Op      uint8
	Key     string // the key, or the prefix of a list
	Value   []byte // put: aliases the payload
	TTL     time.Duration
	Limit   int // list: at most this many keys (0: the provider's cap)
	isWrite bool
}

// Decode decodes a KV submission (docs/hostcalls.md) and checks its key, value and ttl.
func Decode(b []byte, maxValue int) (Request, error) {
	d := wire.NewDecoder(b)
	r := Request{Op: d.U8("op")}
	switch r.Op {
	case OpGet, OpDelete:
		r.Key = d.Str("key")
	case OpPut:
		r.Key = d.Str("key")
		r.Value = d.Bytes("value")
		ms := d.U64("ttl_ms")
		if ms > uint64(365*24*time.Hour/time.Millisecond) {
			d.Fail(fmt.Sprintf("ttl of %d ms is over a year", ms))
		}
		r.TTL = time.Duration(ms) * time.Millisecond
	case OpList:
		r.Key = d.Str("prefix")
		r.Limit = int(d.U32("limit"))
	default:
		if d.Err() == nil {
			d.Fail(fmt.Sprintf("op %d is not get (1), put (2), delete (3) or list (4)", r.Op))
		}
	}
	if err := d.End(); err != nil {
		return Request{}, fmt.Errorf("cannot decode kv call: %w", err)
	}
	if err := validKey(r.Key, r.Op == OpList); err != nil {
		return Request{}, err
	}
	switch {
	case len(r.Value) > maxValue:
		return Request{}, fmt.Errorf("value of %d bytes is over the limit of %d bytes", len(r.Value), maxValue)
	case r.TTL != 0 && r.TTL < time.Second:
		return Request{}, fmt.Errorf("ttl %v: want 0 (no expiry) or at least 1s", r.TTL)
	}
	return r, nil
}

// validKey applies the Global KV's key rules: 1 to MaxKeyBytes bytes of letters, digits and
// "-/_=.", '.' only between other characters. A list prefix may be empty and end with '.'.
func validKey(k string, prefix bool) error {
	what := "key"
	if prefix {
		what = "prefix"
	}
	if k == "" && !prefix {
		return errors.New("empty key")
	}
	if len(k) > MaxKeyBytes {
		return fmt.Errorf("%s of %d bytes is over the limit of %d bytes", what, len(k), MaxKeyBytes)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-/_=.", c) >= 0) {
			return fmt.Errorf("%s %q: use letters, digits and \"-/_=.\", with '.' only between other characters", what, k)
		}
	}
	if strings.HasPrefix(k, ".") || strings.Contains(k, "..") || !prefix && strings.HasSuffix(k, ".") {
		return fmt.Errorf("%s %q: use letters, digits and \"-/_=.\", with '.' only between other characters", what, k)
	}
	return nil
}

// get is a get waiting in a batch for its namespace's GetMany.
type get struct {
	call *ring.Call
	key  string
}

// scratch is what one Serve needs, pooled: workers serve batches concurrently.
type scratch struct {
	groups []group
	keys   []string
}

// group is one namespace's gets in a batch.
type group struct {
	ns   string
	gets []get
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Serve serves a batch in order, coalescing each namespace's run of gets into one GetMany.
func (p *Provider) Serve(batch []*ring.Call) {
	s := scratchPool.Get().(*scratch)
	for _, c := range batch {
		r, err := Decode(c.Payload(), p.cfg.MaxValue)
		if err != nil {
			c.Fail(ring.CodeInvalid, err)
			continue
		}
		g := s.group(c.Function().Namespace())
		if r.Op == OpGet {
			g.gets = append(g.gets, get{call: c, key: r.Key})
			continue
		}
		if len(g.gets) > 0 { // reads submitted before this write go first
			p.getMany(s, g)
		}
		p.write(c, g.ns, &r)
	}
	for i := range s.groups {
		if len(s.groups[i].gets) > 0 {
			p.getMany(s, &s.groups[i])
		}
	}
	clear(s.groups)
	s.groups = s.groups[:0]
	scratchPool.Put(s)
}

func (s *scratch) group(ns string) *group {
	for i := range s.groups {
		if s.groups[i].ns == ns {
			return &s.groups[i]
		}
	}
	if len(s.groups) < cap(s.groups) {
		s.groups = s.groups[:len(s.groups)+1] // keep the gets slice's capacity
		g := &s.groups[len(s.groups)-1]
		g.ns = ns
		return g
	}
	s.groups = append(s.groups, group{ns: ns})
	return &s.groups[len(s.groups)-1]
}

// getMany serves g's gets with one GetMany and empties g. It passes the provider's context: the
// gets may belong to several requests, and the store bounds its own calls.
func (p *Provider) getMany(s *scratch, g *group) {
	keys := s.keys[:0]
	for _, x := range g.gets {
		keys = append(keys, x.key)
	}
	entries, err := p.cfg.Store.GetMany(p.ctx, g.ns, keys)
	clear(keys)
	s.keys = keys[:0]
	getManyTotal.Inc()
	getKeysTotal.Add(len(g.gets))
	if err == nil && len(entries) != len(g.gets) {
		err = fmt.Errorf("store returned %d entries for %d keys", len(entries), len(g.gets))
	}
	for i, x := range g.gets {
		if err != nil {
			x.call.Fail(code(err), fmt.Errorf("cannot get %q: %w", x.key, err))
			continue
		}
		out := x.call.Result()
		if e := entries[i]; e.Revision != 0 {
			out = wire.AppendBytes(wire.AppendU8(out, 1), e.Value)
		} else {
			out = wire.AppendU32(wire.AppendU8(out, 0), 0)
		}
		x.call.Complete(out)
	}
	clear(g.gets)
	g.gets = g.gets[:0]
}

// write serves a put, delete or list under the request's context, whose deadline bounds it.
func (p *Provider) write(c *ring.Call, ns string, r *Request) {
	ctx := c.Context()
	out := c.Result()
	var err error
	switch r.Op {
	case OpPut:
		err = p.cfg.Store.Put(ctx, ns, r.Key, r.Value, r.TTL)
	case OpDelete:
		err = p.cfg.Store.Delete(ctx, ns, r.Key)
	case OpList:
		var keys []string
		if keys, err = p.cfg.Store.Keys(ctx, ns, r.Key); err == nil {
			limit := p.cfg.MaxList
			if r.Limit > 0 && r.Limit < limit {
				limit = r.Limit
			}
			more := len(keys) > limit
			keys = keys[:min(len(keys), limit)]
			out = wire.AppendU32(out, uint32(len(keys)))
			for _, k := range keys {
				out = wire.AppendStr(out, k)
			}
			out = wire.AppendU8(out, boolByte(more))
		}
	}
	if err != nil {
		c.Fail(code(err), fmt.Errorf("cannot %s %q: %w", opName(r.Op), r.Key, err))
		return
	}
	c.Complete(out)
}

func code(err error) ring.Code {
	switch {
	case errors.Is(err, ErrInvalid):
		return ring.CodeInvalid
	case errors.Is(err, context.DeadlineExceeded):
		return ring.CodeTimeout
	}
	return ring.CodeUnavailable
}

func opName(op uint8) string {
	switch op {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpList:
		return "list keys with prefix"
	}
	return "get"
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
