package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wispfn/wisp/kv/store"
)

// Stores is a KV over one kv/store.Store per namespace: in a node, the Local Cache (kv/cache)
// in front of the Global KV (kv/store.Open). It opens a namespace's store the first time a
// function of that namespace makes a call, keeps it until Close, and retries an open that failed
// on the next call. It is safe for concurrent use.
type Stores struct {
	open func(ctx context.Context, namespace string) (store.Store, error)

	mu     sync.RWMutex
	m      map[string]store.Store
	closed bool
}

// NewStores returns a KV that gets each namespace's store from open.
func NewStores(open func(ctx context.Context, namespace string) (store.Store, error)) *Stores {
	return &Stores{open: open, m: map[string]store.Store{}}
}

func (s *Stores) store(ctx context.Context, ns string) (store.Store, error) {
	s.mu.RLock()
	st, ok := s.m[ns]
	s.mu.RUnlock()
	if ok {
		return st, nil
	}
	// Opened under the lock: a namespace must not get two caches (they would share metrics).
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[ns]; ok {
		return st, nil
	}
	if s.closed {
		return nil, errors.New("kv stores closed")
	}
	st, err := s.open(ctx, ns)
	if err != nil {
		return nil, classify(fmt.Errorf("cannot open namespace %q: %w", ns, err))
	}
	s.m[ns] = st
	return st, nil
}

// classify makes the store's errors about malformed input wrap ErrInvalid.
func classify(err error) error {
	if errors.Is(err, store.ErrInvalid) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// GetMany implements KV.
func (s *Stores) GetMany(ctx context.Context, ns string, keys []string) ([]Entry, error) {
	st, err := s.store(ctx, ns)
	if err != nil {
		return nil, err
	}
	es, err := st.GetMany(ctx, keys)
	if err != nil {
		return nil, classify(err)
	}
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = Entry{Value: e.Value, Revision: e.Revision}
	}
	return out, nil
}

// Put implements KV.
func (s *Stores) Put(ctx context.Context, ns, key string, value []byte, ttl time.Duration) error {
	st, err := s.store(ctx, ns)
	if err != nil {
		return err
	}
	_, err = st.Put(ctx, key, value, ttl)
	return classify(err)
}

// Delete implements KV.
func (s *Stores) Delete(ctx context.Context, ns, key string) error {
	st, err := s.store(ctx, ns)
	if err != nil {
		return err
	}
	return classify(st.Delete(ctx, key, 0))
}

// Keys implements KV.
func (s *Stores) Keys(ctx context.Context, ns, prefix string) ([]string, error) {
	st, err := s.store(ctx, ns)
	if err != nil {
		return nil, err
	}
	keys, err := st.Keys(ctx, prefix)
	return keys, classify(err)
}

// Close closes the stores it opened that have a Close method (a kv/cache.Cache does), after the
// provider has been cleaned up.
func (s *Stores) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for ns, st := range s.m {
		if c, ok := st.(interface{ Close() }); ok {
			c.Close()
		}
		delete(s.m, ns)
	}
}
