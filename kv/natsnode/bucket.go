package natsnode

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is a key-value bucket as this node's region sees it. In the home region (and in a
// single-region deployment) it is the origin bucket itself; in an edge region, Read is a
// local mirror of the home region's bucket and writes go to the origin.
type Bucket struct {
	// Read serves reads and watches: the origin, or the local mirror in an edge region. Do
	// not write through it.
	Read jetstream.KeyValue
	// Stream is the name of Read's stream, for direct-get requests.
	Stream string
	// Subjects is the subject prefix of the bucket's keys in Read's stream: key K is stored
	// under Subjects+K.
	Subjects string
	// WritePrefix is the subject prefix writes are published to: key K is written by
	// publishing to WritePrefix+K. In an edge region it addresses the origin in the home
	// region's JetStream domain, through the leaf-node link.
	WritePrefix string

	name string
	node *Node

	mu           sync.Mutex
	origin       jetstream.KeyValue
	originStream jetstream.Stream
}

// Mirrored reports whether Read is a mirror of the home region's bucket.
func (b *Bucket) Mirrored() bool { return b.node.Edge() }

// Origin returns the origin bucket, for reads that must see every acknowledged write (the
// read of a compare-and-set). In an edge region it is reached through the leaf-node link:
// Origin fails while the link is down, and is resolved again on the next call.
func (b *Bucket) Origin(ctx context.Context) (jetstream.KeyValue, error) {
	if !b.node.Edge() {
		return b.Read, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.origin != nil {
		return b.origin, nil
	}
	kv, err := b.node.homeJS.KeyValue(ctx, b.name)
	if err != nil {
		return nil, fmt.Errorf("cannot reach bucket %q in home region %q: %w", b.name, b.node.home, err)
	}
	b.origin = kv
	return kv, nil
}

// Last returns the origin's last record of key and its revision, a delete or purge marker
// included (live is then false and value nil). The revision is what a compare-and-set of
// key (Update) must name to succeed only if nothing touched key since: unlike Create after a
// not-found Get, it cannot succeed over a delete and re-creation that happened in between.
// Revision 0 means key was never written (or its markers were removed). In an edge region
// Last reads the origin through the leaf-node link.
func (b *Bucket) Last(ctx context.Context, key string) (value []byte, rev uint64, live bool, err error) {
	if key == "" || strings.ContainsAny(key, "*> \t\r\n") {
		// A wildcard would read the last message of any matching key.
		return nil, 0, false, fmt.Errorf("cannot read key %q of bucket %q: a key is one subject, without wildcards or spaces", key, b.name)
	}
	st, err := b.stream(ctx)
	if err != nil {
		return nil, 0, false, err
	}
	m, err := st.GetLastMsgForSubject(ctx, "$KV."+b.name+"."+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("cannot read key %q of bucket %q: %w", key, b.name, err)
	}
	switch m.Header.Get("KV-Operation") {
	case "DEL", "PURGE":
		return nil, m.Sequence, false, nil
	}
	return m.Data, m.Sequence, true, nil
}

// stream returns the origin's stream, looked up on first use (and again after a failure).
func (b *Bucket) stream(ctx context.Context) (jetstream.Stream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.originStream != nil {
		return b.originStream, nil
	}
	st, err := b.node.homeJS.Stream(ctx, b.Stream)
	if err != nil {
		return nil, fmt.Errorf("cannot look up the origin stream of bucket %q: %w", b.name, err)
	}
	b.originStream = st
	return st, nil
}

// homeWait bounds how long OpenKeyValue waits for the home region when it must create a
// bucket there.
const homeWait = 10 * time.Second

// OpenKeyValue opens the bucket cfg.Bucket, creating it with cfg if it does not exist. An
// existing bucket keeps the configuration it was created with.
//
// In an edge region, OpenKeyValue opens the local mirror; if there is none yet, it creates the
// origin in the home region (unless it exists) and a mirror of it here, and for that it
// waits for the home region up to a bounded time. An existing mirror opens without the home
// region, so an edge node starts and serves reads while the link is down.
func (n *Node) OpenKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (*Bucket, error) {
	kv, err := n.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if n.Edge() {
			kv, err = n.createMirror(ctx, cfg)
		} else {
			kv, err = createKV(ctx, n.js, cfg)
		}
	}
	if err != nil {
		return nil, err
	}
	info, err := n.js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("cannot look up the stream of bucket %q: %w", cfg.Bucket, err)
	}
	mirror := info.CachedInfo().Config.Mirror
	b := &Bucket{
		Read:        kv,
		Stream:      "KV_" + cfg.Bucket,
		Subjects:    "$KV." + cfg.Bucket + ".",
		WritePrefix: "$KV." + cfg.Bucket + ".",
		name:        cfg.Bucket,
		node:        n,
	}
	switch {
	case n.Edge() && mirror == nil:
		return nil, fmt.Errorf("bucket %q in edge region %q is not a mirror of home region %q: it was created while this store was not an edge region; use a new store directory", cfg.Bucket, n.region, n.home)
	case !n.Edge() && mirror != nil:
		return nil, fmt.Errorf("bucket %q in region %q is a mirror of %q: it was created while this store was an edge region; use a new store directory", cfg.Bucket, n.region, mirror.Name)
	case n.Edge():
		b.WritePrefix = "$JS." + n.home + ".API.$KV." + cfg.Bucket + "."
	}
	return b, nil
}

// createKV creates a bucket, or opens it if another process created it first.
func createKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot create bucket %q: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// createMirror makes sure the origin exists in the home region and creates a local mirror
// of it with the origin's limits.
func (n *Node) createMirror(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, homeWait)
	defer cancel()
	var (
		origin jetstream.KeyValue
		err    error
	)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		origin, err = createKV(ctx, n.homeJS, cfg)
		if err == nil || !Unreachable(err) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot create the origin of bucket %q in home region %q: %w: %w (gave up: %v)", cfg.Bucket, n.home, ErrHomeUnreachable, err, ctx.Err())
		case <-time.After(wait):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot create the origin of bucket %q in home region %q: %w", cfg.Bucket, n.home, err)
	}
	st, err := origin.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot read the configuration of bucket %q in home region %q: %w", cfg.Bucket, n.home, err)
	}
	oc := st.Config()
	mcfg := jetstream.KeyValueConfig{
		Bucket:       cfg.Bucket,
		Description:  oc.Description,
		History:      oc.History,
		MaxValueSize: oc.MaxValueSize,
		MaxBytes:     cfg.MaxBytes,
		Storage:      cfg.Storage,
		Replicas:     cfg.Replicas,
		Compression:  cfg.Compression,
		Mirror:       &jetstream.StreamSource{Name: cfg.Bucket, Domain: n.home},
	}
	kv, err := createKV(ctx, n.js, mcfg)
	if err != nil {
		return nil, fmt.Errorf("cannot mirror bucket %q of home region %q: %w", cfg.Bucket, n.home, err)
	}
	return kv, nil
}

// ErrHomeUnreachable: an edge region gave up waiting for its home region, which did not answer
// until the caller's context ended.
var ErrHomeUnreachable = errors.New("the home region is unreachable")

// Unreachable reports whether err means that NATS, or the JetStream it addressed, did not
// answer: the connection is down, nobody serves the subject (an edge region's link to the
// home region is down), or the request timed out.
func Unreachable(err error) bool {
	return errors.Is(err, ErrHomeUnreachable) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
