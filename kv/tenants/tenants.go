// Package tenants keeps the admin tokens of tenants: a tenant's token opens the admin API to
// that tenant's functions only (package gateway scopes the requests). Tokens are stored hashed
// (sha256) in a key-value bucket of the home region, so a copy of the store reveals none; every
// node follows the bucket by watch and checks a token in memory, without a round trip.
package tenants

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/internal/kvwatch"
	"github.com/wispfn/wisp/kv/natsnode"
)

const bucket = "wisp_tenant_tokens"

// ErrInvalid: a malformed tenant name.
var ErrInvalid = errors.New("invalid")

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidName returns nil if name can name a tenant: the rule of function names.
func ValidName(name string) error {
	if nameRe.MatchString(name) {
		return nil
	}
	return fmt.Errorf("%w tenant %q: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit", ErrInvalid, name)
}

// record is a token's entry, under the key "t." + the token's sha256.
type record struct {
	Tenant  string    `json:"tenant"`
	Created time.Time `json:"created"`
}

// Tokens creates, revokes and checks tenants' tokens. Safe for concurrent use.
type Tokens struct {
	b *natsnode.Bucket

	mu     sync.RWMutex
	byHash map[string]string // key → tenant
}

// Open opens (creating if needed) the token bucket on n and follows it until ctx ends; it
// returns once the tokens that exist are known.
func Open(ctx context.Context, n *natsnode.Node) (*Tokens, error) {
	b, err := n.OpenKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "Wisp tenants' admin tokens: t.SHA256 → tenant",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open the tenant token bucket: %w", err)
	}
	t := &Tokens{b: b, byHash: map[string]string{}}
	ready := make(chan struct{})
	ended := make(chan struct{})
	var once sync.Once
	err = kvwatch.Start(ctx, n, b.Read, kvwatch.Options{}, func(u kvwatch.Update) bool {
		t.update(u)
		if u.Kind == kvwatch.Ready {
			once.Do(func() { close(ready) })
		}
		return true
	}, func() { close(ended) })
	if err != nil {
		return nil, fmt.Errorf("cannot watch the tenant tokens: %w", err)
	}
	select {
	case <-ready:
		return t, nil
	case <-ended:
		return nil, fmt.Errorf("the tenant token watch ended: %w", context.Cause(ctx))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (t *Tokens) update(u kvwatch.Update) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch u.Kind {
	case kvwatch.Reset:
		clear(t.byHash)
		return
	case kvwatch.Ready:
		return
	}
	e := u.Entry
	if e.Operation() != jetstream.KeyValuePut {
		delete(t.byHash, e.Key())
		return
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil || ValidName(r.Tenant) != nil || !strings.HasPrefix(e.Key(), "t.") {
		return // not a token of ours
	}
	t.byHash[e.Key()] = r.Tenant
}

func key(token []byte) string {
	sum := sha256.Sum256(token)
	return "t." + hex.EncodeToString(sum[:])
}

// Create makes a new token for tenant and returns it; only its hash is stored. The token
// works on every node once the node has seen it (milliseconds; this node before Create
// returns).
func (t *Tokens) Create(ctx context.Context, tenant string) (string, error) {
	if err := ValidName(tenant); err != nil {
		return "", err
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := "wt_" + tenant + "_" + hex.EncodeToString(raw[:])
	v, err := json.Marshal(record{Tenant: tenant, Created: time.Now().UTC()})
	if err != nil {
		return "", err
	}
	kv, err := t.b.Origin(ctx)
	if err != nil {
		return "", fmt.Errorf("cannot store the token: %w", err)
	}
	k := key([]byte(token))
	if _, err := kv.Create(ctx, k, v); err != nil {
		return "", fmt.Errorf("cannot store the token: %w", err)
	}
	t.mu.Lock()
	t.byHash[k] = tenant // usable here at once; the watch confirms it
	t.mu.Unlock()
	return token, nil
}

// Revoke deletes every token of tenant, made through any node, and returns how many there
// were. Every node stops accepting them once it has seen the deletions (milliseconds; this
// node before Revoke returns).
func (t *Tokens) Revoke(ctx context.Context, tenant string) (int, error) {
	if err := ValidName(tenant); err != nil {
		return 0, err
	}
	kv, err := t.b.Origin(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot revoke tokens: %w", err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot revoke tokens: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	n := 0
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("cannot revoke tokens: %w", err)
		}
		var r record
		if json.Unmarshal(e.Value(), &r) != nil || r.Tenant != tenant {
			continue
		}
		if err := kv.Purge(ctx, k); err != nil {
			return n, fmt.Errorf("cannot revoke tokens: %w", err)
		}
		t.mu.Lock()
		delete(t.byHash, k)
		t.mu.Unlock()
		n++
	}
	return n, nil
}

// Tenant returns the tenant whose token this is.
func (t *Tokens) Tenant(token []byte) (string, bool) {
	if len(token) == 0 || len(token) > 256 {
		return "", false
	}
	k := key(token)
	t.mu.RLock()
	defer t.mu.RUnlock()
	tenant, ok := t.byHash[k]
	return tenant, ok
}
