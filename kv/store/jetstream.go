package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/internal/kvwatch"
	"github.com/wispfn/wisp/kv/natsnode"
)

// Storage kinds for Options.Storage.
const (
	// StorageFile keeps the namespace on disk, under the node's store directory (default).
	StorageFile = "file"
	// StorageMemory keeps it in the NATS server's memory: faster writes, lost at restart.
	StorageMemory = "memory"
)

const (
	// DefaultMaxValueBytes is the largest value unless Options.MaxValueBytes says otherwise:
	// 512 KiB, which fits with its key and headers in one message under NATS's default
	// max_payload of 1 MiB.
	DefaultMaxValueBytes = 512 << 10
	// DefaultMarkerTTL is how long a deleted or expired key's marker stays by default.
	DefaultMarkerTTL = 24 * time.Hour

	// payloadHeadroom is what a write's subject-independent headers may take on top of its
	// value within the connection's max_payload.
	payloadHeadroom = 1 << 10
	// bucketPrefix starts the name of every namespace's bucket.
	bucketPrefix = "wisp_kv_"
)

// Options configures Open: the namespace bucket's limits. The zero value means the documented
// defaults. They take effect when Open creates the bucket; an existing bucket keeps the
// configuration it was created with (MaxValueBytes is also checked before every write).
type Options struct {
	// History is how many revisions of each key the bucket keeps, 1 to 64; 0 means 1. A
	// Store reads only the current one: more is for operators inspecting the bucket. With
	// more than 1, the server raises a key's ttl to at least MarkerTTL.
	History int

	// MaxValueBytes is the largest value a write accepts (ErrTooLarge above it); 0 means
	// DefaultMaxValueBytes. Open refuses a limit that would not fit in one NATS message
	// (the server's max_payload, minus 1 KiB for the key and headers).
	MaxValueBytes int

	// MaxBytes bounds the bucket's total size; a write that would exceed it fails. 0 means
	// no limit.
	MaxBytes int64

	// Storage is StorageFile ("" means it) or StorageMemory.
	Storage string

	// MarkerTTL is how long the marker of a deleted or expired key stays in the bucket; 0
	// means DefaultMarkerTTL, and it must be at least a second. Markers are how watchers
	// and other regions' copies learn of deletions: a region cut off from the home region
	// for longer than MarkerTTL may keep keys deleted meanwhile until they are written again.
	MarkerTTL time.Duration
}

func (o Options) config(namespace string) (jetstream.KeyValueConfig, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:         bucketPrefix + namespace,
		Description:    "Wisp Global KV namespace " + namespace,
		History:        uint8(max(o.History, 1)),
		MaxValueSize:   int32(o.MaxValueBytes),
		MaxBytes:       o.MaxBytes,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: o.MarkerTTL,
	}
	switch {
	case o.History < 0 || o.History > jetstream.KeyValueMaxHistory:
		return cfg, fmt.Errorf("%w history %d: want 1 to %d revisions", ErrInvalid, o.History, jetstream.KeyValueMaxHistory)
	case o.MaxValueBytes < 0:
		return cfg, fmt.Errorf("%w max value size %d: must not be negative (0 means %d bytes)", ErrInvalid, o.MaxValueBytes, DefaultMaxValueBytes)
	case o.MaxBytes < 0:
		return cfg, fmt.Errorf("%w max bucket size %d: must not be negative (0 means no limit)", ErrInvalid, o.MaxBytes)
	case o.MarkerTTL != 0 && o.MarkerTTL < time.Second:
		return cfg, fmt.Errorf("%w marker ttl %s: want at least 1s (0 means %s)", ErrInvalid, o.MarkerTTL, DefaultMarkerTTL)
	}
	if o.MaxValueBytes == 0 {
		cfg.MaxValueSize = DefaultMaxValueBytes
	}
	if o.MarkerTTL == 0 {
		cfg.LimitMarkerTTL = DefaultMarkerTTL
	}
	switch o.Storage {
	case "", StorageFile:
	case StorageMemory:
		cfg.Storage = jetstream.MemoryStorage
	default:
		return cfg, fmt.Errorf("%w storage %q: want %q or %q", ErrInvalid, o.Storage, StorageFile, StorageMemory)
	}
	return cfg, nil
}

// natsStore is a Store on a JetStream key-value bucket.
type natsStore struct {
	ns        string
	node      *natsnode.Node
	js        jetstream.JetStream
	b         *natsnode.Bucket
	maxValue  int
	markerTTL time.Duration
}

// Open opens namespace on node n, creating its bucket with o if it does not exist yet (in an
// edge region: the origin in the home region and a mirror here, see natsnode.OpenKeyValue).
// A bucket deleted behind a running store is not recreated: operations on it fail.
//
// The store lives as long as n; it needs no closing.
func Open(ctx context.Context, n *natsnode.Node, namespace string, o Options) (Store, error) {
	if err := ValidNamespace(namespace); err != nil {
		return nil, fmt.Errorf("cannot open namespace: %w", err)
	}
	cfg, err := o.config(namespace)
	if err != nil {
		return nil, fmt.Errorf("cannot open namespace %q: %w", namespace, err)
	}
	if limit := n.Conn().MaxPayload() - payloadHeadroom; int64(cfg.MaxValueSize) > limit {
		return nil, fmt.Errorf("cannot open namespace %q: %w max value size %d: over the %d bytes one NATS message holds with its headers; raise the server's max_payload or lower the value limit", namespace, ErrInvalid, cfg.MaxValueSize, limit)
	}
	b, err := n.OpenKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot open namespace %q: %w", namespace, classify(ctx, err))
	}
	return &natsStore{
		ns:        namespace,
		node:      n,
		js:        n.JetStream(),
		b:         b,
		maxValue:  int(cfg.MaxValueSize),
		markerTTL: cfg.LimitMarkerTTL,
	}, nil
}

// classify wraps err with the sentinel it stands for, if any.
func classify(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, natsnode.ErrHomeUnreachable):
		// Before the caller's deadline: the home region's silence, not the deadline, is news.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err // the caller's own deadline or cancellation
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch), wrongLastSequence(err):
		return fmt.Errorf("%w: %w", ErrRevisionMismatch, err)
	case errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum), errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case natsnode.Unreachable(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// wrongLastSequence reports whether err is the server's answer to a conditional write whose
// expected revision was not the key's.
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func (s *natsStore) fail(ctx context.Context, op, key string, err error) error {
	if natsnode.Unreachable(err) && s.gone(ctx) {
		return fmt.Errorf("cannot %s key %q in namespace %q: its bucket %s no longer exists (it was deleted while the store was open; Open creates it again)", op, key, s.ns, s.b.Stream)
	}
	return fmt.Errorf("cannot %s key %q in namespace %q: %w", op, key, s.ns, classify(ctx, err))
}

// gone reports whether the local stream of the namespace was deleted: with NATS connected,
// that is why nobody answers for it.
func (s *natsStore) gone(ctx context.Context) bool {
	if !s.node.Connected() || ctx.Err() != nil {
		return false
	}
	_, err := s.js.Stream(ctx, s.b.Stream)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// up fails fast with ErrUnavailable while the connection to NATS is down.
func (s *natsStore) up(op, key string) error {
	if s.node.Connected() {
		return nil
	}
	return fmt.Errorf("cannot %s key %q in namespace %q: %w: not connected to NATS", op, key, s.ns, ErrUnavailable)
}

func (s *natsStore) Namespace() string { return s.ns }

func (s *natsStore) Get(ctx context.Context, key string) (Entry, error) {
	if err := ValidKey(key); err != nil {
		return Entry{}, err
	}
	if err := s.up("get", key); err != nil {
		return Entry{}, err
	}
	e, err := s.b.Read.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, s.fail(ctx, "get", key, err)
	}
	return Entry{Key: key, Value: e.Value(), Revision: e.Revision(), Created: e.Created()}, nil
}

func (s *natsStore) checkWrite(op, key string, value []byte, ttl time.Duration) (time.Duration, error) {
	if err := ValidKey(key); err != nil {
		return 0, err
	}
	if len(value) > s.maxValue {
		return 0, fmt.Errorf("cannot %s key %q in namespace %q: %w: %d bytes, over the limit of %d bytes", op, key, s.ns, ErrTooLarge, len(value), s.maxValue)
	}
	ttl, err := checkTTL(ttl)
	if err != nil {
		return 0, fmt.Errorf("cannot %s key %q in namespace %q: %w", op, key, s.ns, err)
	}
	return ttl, s.up(op, key)
}

// publish writes a message for key to the origin bucket and returns its revision.
func (s *natsStore) publish(ctx context.Context, op, key string, m *nats.Msg, opts ...jetstream.PublishOpt) (uint64, error) {
	m.Subject = s.b.WritePrefix + key
	ack, err := s.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		return 0, s.fail(ctx, op, key, err)
	}
	return ack.Sequence, nil
}

func (s *natsStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	ttl, err := s.checkWrite("put", key, value, ttl)
	if err != nil {
		return 0, err
	}
	var opts []jetstream.PublishOpt
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	return s.publish(ctx, "put", key, &nats.Msg{Data: value}, opts...)
}

func (s *natsStore) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	ttl, err := s.checkWrite("create", key, value, ttl)
	if err != nil {
		return 0, err
	}
	// The origin's Create also succeeds over a deletion marker, which it reads back from
	// the origin: in an edge region the local copy may not have the marker yet.
	origin, err := s.b.Origin(ctx)
	if err != nil {
		return 0, s.fail(ctx, "create", key, err)
	}
	var opts []jetstream.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, jetstream.KeyTTL(ttl))
	}
	rev, err := origin.Create(ctx, key, value, opts...)
	if err != nil {
		return 0, s.fail(ctx, "create", key, err)
	}
	return rev, nil
}

func (s *natsStore) Update(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error) {
	ttl, err := s.checkWrite("update", key, value, ttl)
	if err != nil {
		return 0, err
	}
	if revision == 0 {
		return 0, fmt.Errorf("cannot update key %q in namespace %q: %w revision 0: Update needs the revision the key was read at (Create writes a new key)", key, s.ns, ErrInvalid)
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(revision)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	return s.publish(ctx, "update", key, &nats.Msg{Data: value}, opts...)
}

// Headers of a deletion, as jetstream's key-value Purge writes them.
const (
	kvOperation = "KV-Operation"
	kvPurge     = "PURGE"
)

func (s *natsStore) Delete(ctx context.Context, key string, revision uint64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := s.up("delete", key); err != nil {
		return err
	}
	// A purge: the marker replaces every revision of the key, and expires after MarkerTTL.
	m := &nats.Msg{Header: nats.Header{}}
	m.Header.Set(kvOperation, kvPurge)
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if revision > 0 {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(revision, 10))
	}
	_, err := s.publish(ctx, "delete", key, m, jetstream.WithMsgTTL(s.markerTTL))
	return err
}

func (s *natsStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, err
	}
	if err := s.up("list", prefix+"*"); err != nil {
		return nil, err
	}
	w, err := s.b.Read.WatchFiltered(ctx, []string{filterFor(prefix)}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("cannot list keys %q* in namespace %q: %w", prefix, s.ns, classify(ctx, err))
	}
	defer stopWatch(w)
	var keys []string
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("cannot list keys %q* in namespace %q: %w: the listing ended early", prefix, s.ns, ErrUnavailable)
			}
			if e == nil {
				slices.Sort(keys)
				return slices.Compact(keys), nil
			}
			if strings.HasPrefix(e.Key(), prefix) {
				keys = append(keys, e.Key())
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot list keys %q* in namespace %q: %w", prefix, s.ns, ctx.Err())
		}
	}
}

// stopWatch stops w and drains its channel, so that the subscription's callback, which may
// be blocked sending to a full channel, can return and the channel be closed.
func stopWatch(w jetstream.KeyWatcher) {
	_ = w.Stop()
	for range w.Updates() {
	}
}

func (s *natsStore) Watch(ctx context.Context, prefix string, o WatchOptions) (<-chan Event, error) {
	if err := validPrefix(prefix); err != nil {
		return nil, err
	}
	out := make(chan Event, 64)
	initial := !o.UpdatesOnly // delivering the state at the start, not changes
	deliver := func(u kvwatch.Update) bool {
		switch u.Kind {
		case kvwatch.Ready:
			initial = false
		case kvwatch.Reset:
			initial = !o.UpdatesOnly
		}
		ev, ok := toEvent(u, prefix, initial)
		if !ok {
			return true
		}
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		case <-s.node.Done():
			return false
		}
	}
	wo := kvwatch.Options{Filters: []string{filterFor(prefix)}, UpdatesOnly: o.UpdatesOnly}
	if err := kvwatch.Start(ctx, s.node, s.b.Read, wo, deliver, func() { close(out) }); err != nil {
		return nil, fmt.Errorf("cannot watch keys %q* in namespace %q: %w", prefix, s.ns, classify(ctx, err))
	}
	return out, nil
}

// toEvent translates a watch update; ok is false for keys outside prefix and, in the initial
// state, for the markers of keys that were already gone.
func toEvent(u kvwatch.Update, prefix string, initial bool) (ev Event, ok bool) {
	switch u.Kind {
	case kvwatch.Ready:
		return Event{Op: OpReady}, true
	case kvwatch.Reset:
		return Event{Op: OpReset}, true
	}
	e := u.Entry
	if !strings.HasPrefix(e.Key(), prefix) {
		return Event{}, false
	}
	ev.Entry = Entry{Key: e.Key(), Revision: e.Revision(), Created: e.Created()}
	if e.Operation() == jetstream.KeyValuePut {
		ev.Op, ev.Value = OpPut, e.Value()
		return ev, true
	}
	if initial {
		return Event{}, false
	}
	ev.Op = OpDelete
	return ev, true
}
