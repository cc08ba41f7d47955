// Package store is Wisp's Global KV: a key-value store per namespace, kept in a NATS JetStream
// key-value bucket, behind an interface that keeps nats types out of the rest of Wisp.
//
// Every write gives the key a new revision, a number that grows with every write to the
// namespace; Create, Update and Delete can be made conditional on it. A key can carry a
// time-to-live, after which it is deleted by the server. Watch reports changes as they happen.
//
// In a multi-region deployment (see kv/natsnode), each region reads from its own copy of the
// namespace, and writes go to the home region: a read after a write in another region
// returns the previous value until the home region's copy reaches this one (kv/README.md
// gives the measured delay).
package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Errors a caller can branch on; errors.Is finds them in every error the store returns.
var (
	// ErrNotFound: the key does not exist (it was never written, was deleted, or expired).
	// Get returns it as is, unwrapped, so that a miss costs no allocation.
	ErrNotFound = errors.New("key not found")
	// ErrRevisionMismatch: Create found the key existing, or Update or a conditional Delete
	// found it at another revision than the one given. Read the key again and retry.
	ErrRevisionMismatch = errors.New("revision mismatch")
	// ErrInvalid: the input is malformed (namespace, key, prefix, ttl, options); retrying
	// the same input fails the same way. ErrInvalidKey and ErrTooLarge are kinds of it.
	ErrInvalid = errors.New("invalid")
	// ErrInvalidKey: a key or prefix breaks the key rules (see ValidKey).
	ErrInvalidKey = fmt.Errorf("%w key", ErrInvalid)
	// ErrTooLarge: a value is over the namespace's size limit (Options.MaxValueBytes).
	ErrTooLarge = fmt.Errorf("%w value: too large", ErrInvalid)
	// ErrUnavailable: NATS did not answer: the connection is down, the request timed out,
	// or (in an edge region) the home region that takes writes is unreachable. Retrying
	// later may succeed.
	ErrUnavailable = errors.New("store unavailable")
)

// Entry is a key's value at one revision.
type Entry struct {
	Key string
	// Value is the key's value. Treat it as read-only: a Store may share it with other
	// callers (the Local Cache does).
	Value []byte
	// Revision identifies the write that stored Value; 0 in GetMany's result means the key
	// does not exist.
	Revision uint64
	// Created is when that write was stored.
	Created time.Time
}

// Op says what a watch Event reports.
type Op uint8

const (
	// OpPut: the key was written; the Event's Entry holds its new value.
	OpPut Op = iota + 1
	// OpDelete: the key was deleted or its time-to-live ran out; Entry holds the key and
	// the revision of the deletion, no value.
	OpDelete
	// OpReady: the state at the start of the watch has been delivered (at once with
	// WatchOptions.UpdatesOnly): every later event is a change. Entry is empty.
	OpReady
	// OpReset: the watch was interrupted (the connection to NATS was lost) and has started
	// over, so changes may have been missed in between. What a watcher built from earlier
	// events may be stale: the state follows again (unless UpdatesOnly), then OpReady.
	OpReset
)

func (op Op) String() string {
	switch op {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpReady:
		return "ready"
	case OpReset:
		return "reset"
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// Event is one message of a watch.
type Event struct {
	Op Op
	Entry
}

// WatchOptions configures Store.Watch.
type WatchOptions struct {
	// UpdatesOnly skips the keys' state at the start: only changes are reported.
	UpdatesOnly bool
}

// Store is one namespace of the Global KV. Implementations are safe for concurrent use.
//
// Operations honour ctx; without a deadline, one request to NATS gives up after 5 seconds.
// While the connection to NATS is down, they fail at once with ErrUnavailable.
type Store interface {
	// Namespace returns the namespace the store holds.
	Namespace() string

	// Get returns the key's current value, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)

	// GetMany returns the current values of keys, in one round trip to NATS per 256 keys,
	// each batch read at one point of the namespace's history: result i is keys[i]'s, with
	// Revision 0 if it does not exist.
	GetMany(ctx context.Context, keys []string) ([]Entry, error)

	// Put writes the key and returns the revision of the write. A ttl above zero deletes
	// the key that long after this write (at least a second, counted in whole seconds);
	// zero keeps it until it is deleted, even if an earlier write had a ttl.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error)

	// Create writes the key only if it does not exist, else fails with ErrRevisionMismatch.
	// ttl is as for Put.
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error)

	// Update writes the key only if its current revision is revision (above zero), else
	// fails with ErrRevisionMismatch. ttl is as for Put.
	Update(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error)

	// Delete deletes the key. With revision above zero it deletes it only if that is its
	// current revision, else fails with ErrRevisionMismatch. Deleting a key that does not
	// exist succeeds.
	Delete(ctx context.Context, key string, revision uint64) error

	// Keys returns the keys that start with prefix ("" for all), sorted. Filtering is
	// cheapest when prefix ends with '.': keys are stored by their dot-separated tokens.
	Keys(ctx context.Context, prefix string) ([]string, error)

	// Watch reports changes to the keys that start with prefix ("" for all): first their
	// current values as OpPut events (unless o.UpdatesOnly), then OpReady, then every put
	// and delete as it happens, and OpReset when the watch had to start over. The channel
	// is closed when ctx ends or the store's node closes; the caller must keep receiving
	// until then.
	Watch(ctx context.Context, prefix string, o WatchOptions) (<-chan Event, error)
}

// MaxKeyBytes is the longest key a store accepts.
const MaxKeyBytes = 512

// keyRe is the JetStream key-value key alphabet.
var keyRe = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]*$`)

// ValidKey returns nil if key can name a key: 1 to MaxKeyBytes characters of letters, digits
// and "-/_=.", where '.' separates tokens: not first, not last, not twice in a row. The error
// wraps ErrInvalidKey and states the rule.
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	return validKeyOrPrefix(key, false)
}

// validPrefix is ValidKey for a prefix: it may be empty and may end with '.'.
func validPrefix(prefix string) error {
	return validKeyOrPrefix(prefix, true)
}

func validKeyOrPrefix(s string, prefix bool) error {
	what := "key"
	if prefix {
		what = "prefix"
	}
	if len(s) > MaxKeyBytes {
		return fmt.Errorf("%w: %s of %d bytes is over the limit of %d bytes", ErrInvalidKey, what, len(s), MaxKeyBytes)
	}
	if !keyRe.MatchString(s) || strings.HasPrefix(s, ".") || strings.Contains(s, "..") || (!prefix && strings.HasSuffix(s, ".")) {
		return fmt.Errorf("%w %q: use letters, digits and \"-/_=.\", with '.' only between other characters", ErrInvalidKey, s)
	}
	return nil
}

// filterFor returns the subject filter that selects the keys starting with prefix: its
// complete dot-separated tokens, then '>'. Keys it selects must still be checked against
// prefix.
func filterFor(prefix string) string {
	i := strings.LastIndexByte(prefix, '.')
	if i < 0 {
		return ">"
	}
	return prefix[:i+1] + ">"
}

var namespaceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidNamespace returns nil if name can name a namespace: 1 to 63 characters of lowercase
// letters, digits, '-' and '_', starting with a letter or digit. The error wraps ErrInvalid.
func ValidNamespace(name string) error {
	if namespaceRe.MatchString(name) {
		return nil
	}
	return fmt.Errorf("%w namespace %q: use 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit", ErrInvalid, name)
}

// checkTTL validates a ttl and rounds it up to whole seconds, the server's unit.
func checkTTL(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl == 0:
		return 0, nil
	case ttl < time.Second:
		return 0, fmt.Errorf("%w ttl %s: want 0 (no expiry) or at least 1s", ErrInvalid, ttl)
	}
	if r := ttl % time.Second; r != 0 {
		ttl += time.Second - r
	}
	return ttl, nil
}
