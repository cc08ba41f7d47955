// Package registry stores Wisp's functions on NATS JetStream: their metadata and versions in a
// key-value bucket, and their code, zstd-compressed and addressed by its sha256, in an object
// store.
//
// Keys of the metadata bucket:
//
//	fn.NAME                the current version of function NAME (a full copy of its record)
//	ver.NAME.00000001      version 1 of NAME, written once and never changed
//
// Deploy writes the version record before it moves fn.NAME, so whatever a reader finds under
// fn.NAME is complete. Function names are validated (ValidName) so that a name can never reach
// outside its own keys.
//
// Versions are immutable. Rollback makes an earlier version current again by deploying a copy
// of it as a new version (Function.RollbackOf says which), so the current version number only
// ever grows, a rollback shows in Versions like any deploy, and watchers see it as one.
//
// In an edge region (see kv/natsnode) the metadata bucket is a mirror of the home region's:
// Get, Version, Versions, List and Watch read the mirror, and may lag the home region by the
// mirror's delay; Deploy, Rollback and Delete read and write the home region's bucket, and
// PutCode and Code use the home region's code store, so they fail while it is unreachable.
package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/internal/kvwatch"
	"github.com/wispfn/wisp/kv/natsnode"
)

// Names of the JetStream buckets the registry owns.
const (
	metaBucket = "wisp_functions"
	codeBucket = "wisp_code"
)

// DefaultMaxCodeBytes is the largest module PutCode accepts unless WithMaxCodeBytes says
// otherwise: 64 MiB of uncompressed wasm.
const DefaultMaxCodeBytes = 64 << 20

// maxAttempts bounds the compare-and-set retries of one Deploy or Delete. Each retry means
// another writer made progress, so reaching it takes that many concurrent writers of one name.
const maxAttempts = 100

// Errors a caller can branch on; every error the registry returns for these cases wraps one
// of them (test with errors.Is).
var (
	// ErrNotFound: no such function, version or code.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a compare-and-set failed because another writer changed the same function
	// (for example, it was deleted while being deployed). Retrying may succeed.
	ErrConflict = errors.New("conflicting change")
	// ErrInvalid: the input is malformed (bad name, digest, limits, oversized code). The error
	// text says what is wrong; retrying the same input fails the same way.
	ErrInvalid = errors.New("invalid")
)

// Limits bounds one function's resource use. A zero field means the platform default.
type Limits struct {
	MemoryMiB        int   `json:"memory_mib,omitempty"`
	TimeoutMs        int   `json:"timeout_ms,omitempty"`
	MaxRequestBytes  int64 `json:"max_request_bytes,omitempty"`
	MaxResponseBytes int64 `json:"max_response_bytes,omitempty"`
	MaxInstances     int   `json:"max_instances,omitempty"`
}

// Function is one version of a deployed function.
type Function struct {
	// Name identifies the function; see ValidName.
	Name string `json:"name"`
	// Version is set by Deploy: 1 for the first deploy of a name, then increasing.
	Version uint64 `json:"version"`
	// Digest is the sha256 (lowercase hex) of the function's uncompressed wasm, as returned
	// by PutCode.
	Digest string `json:"digest"`
	// Size is the size in bytes of the uncompressed wasm; Deploy sets it from the code store.
	Size int64 `json:"size"`
	// Route is the path prefix the gateway routes to this function ("" for none).
	Route string `json:"route,omitempty"`
	// Host is the HTTP host the gateway routes to this function ("" for any).
	Host   string `json:"host,omitempty"`
	Limits Limits `json:"limits"`
	// Env is the function's configuration, passed to the guest as environment variables.
	Env map[string]string `json:"env,omitempty"`
	// WarmUp asks for one synthetic request before the function's snapshot is taken.
	WarmUp bool `json:"warmup,omitempty"`
	// FetchAllow lists the hosts the function may fetch from ("api.example.com",
	// "*.example.com", optionally with ":port"); empty: any public host.
	FetchAllow []string `json:"fetch_allow,omitempty"`
	// KVNamespace is the Global KV namespace the function's kv hostcalls use (see ValidName);
	// empty: its own, named after the function. Functions of one tenant may share one.
	KVNamespace string `json:"kv_namespace,omitempty"`
	// Tenant is the tenant the function belongs to (see ValidName); empty: none. A tenant the
	// operator isolates runs only on its own pool of nodes (package sched).
	Tenant string `json:"tenant,omitempty"`
	// Expires, when set, is when the function is deleted: a temporary function (a deploy with
	// a TTL, a playground's). The gateways following the registry delete it then.
	Expires time.Time `json:"expires,omitzero"`
	// PlaygroundKey is the sha256 (lowercase hex) of the key that lets the playground redeploy,
	// follow and delete this function; empty for functions deployed through the admin API.
	PlaygroundKey string `json:"playground_key,omitempty"`
	// Created is when Deploy or Rollback stored this version (UTC).
	Created time.Time `json:"created"`
	// RollbackOf is the version this one is a copy of when Rollback created it, 0 when
	// Deploy did.
	RollbackOf uint64 `json:"rollback_of,omitempty"`
}

// Event is one message of Watch.
type Event struct {
	// Name is the function that changed; "" in the Ready event.
	Name string
	// Function is the function's new current version, or nil when it was deleted (and in
	// the Ready event).
	Function *Function
	// Ready marks the one event that follows the initial state: every function that existed
	// when Watch began has been reported. A gateway can build its routing table from the
	// events before it and serve from it from then on.
	Ready bool
}

// Registry stores functions and code. It is safe for concurrent use, by any number of
// processes sharing the same NATS JetStream. It needs no closing: it lives as long as the
// natsnode.Node it was opened on.
type Registry struct {
	node    *natsnode.Node
	bucket  *natsnode.Bucket
	meta    jetstream.KeyValue // reads: the bucket, or its mirror in an edge region
	enc     *zstd.Encoder
	dec     *zstd.Decoder
	maxCode int64

	codeMu sync.Mutex
	code   jetstream.ObjectStore // opened on first use in an edge region
}

// Option changes a default of Open.
type Option func(*config)

type config struct {
	maxCode int64
}

// WithMaxCodeBytes sets the largest uncompressed module PutCode and Code accept (default
// DefaultMaxCodeBytes). Values below 1 keep the default.
func WithMaxCodeBytes(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxCode = n
		}
	}
}

// Open opens the registry on n, creating its metadata bucket and code store (one replica,
// file storage) if they do not exist yet. Opening an existing registry changes nothing in it.
//
// In an edge region, Open opens the local mirror of the metadata bucket (creating it, and
// the origin if need be, which takes the home region); the code store is the home region's,
// opened on first use.
func Open(ctx context.Context, n *natsnode.Node, opts ...Option) (*Registry, error) {
	c := config{maxCode: DefaultMaxCodeBytes}
	for _, o := range opts {
		o(&c)
	}
	b, err := n.OpenKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      metaBucket,
		Description: "Wisp functions: fn.NAME current version, ver.NAME.N all versions",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open function bucket %q: %w", metaBucket, err)
	}
	r := &Registry{node: n, bucket: b, meta: b.Read, maxCode: c.maxCode}
	if !n.Edge() {
		if _, err := r.codeStore(ctx); err != nil {
			return nil, err
		}
	}
	enc, err := zstd.NewWriter(nil, zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("cannot create zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(c.maxCode)), zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("cannot create zstd decoder: %w", err)
	}
	r.enc, r.dec = enc, dec
	return r, nil
}

// codeStore returns the code store, opening it (in the home region's JetStream) on first use.
func (r *Registry) codeStore(ctx context.Context) (jetstream.ObjectStore, error) {
	r.codeMu.Lock()
	defer r.codeMu.Unlock()
	if r.code != nil {
		return r.code, nil
	}
	code, err := openObjects(ctx, r.node.HomeJetStream())
	if err != nil {
		if r.node.Edge() {
			return nil, fmt.Errorf("cannot open code store %q of home region %q: %w", codeBucket, r.node.Home(), err)
		}
		return nil, fmt.Errorf("cannot open code store %q: %w", codeBucket, err)
	}
	r.code = code
	return code, nil
}

// origin returns the metadata bucket that takes writes: the home region's.
func (r *Registry) origin(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := r.bucket.Origin(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot open function bucket %q: %w", metaBucket, err)
	}
	return kv, nil
}

func openObjects(ctx context.Context, js jetstream.JetStream) (jetstream.ObjectStore, error) {
	obs, err := js.ObjectStore(ctx, codeBucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return obs, err
	}
	obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      codeBucket,
		Description: "Wisp function code: zstd-compressed wasm named by the sha256 of the wasm",
		Storage:     jetstream.FileStorage,
		Replicas:    1,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.ObjectStore(ctx, codeBucket)
	}
	return obs, err
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidName returns nil if name can name a function: 1 to 63 characters of lowercase letters,
// digits and '-', not starting with '-'. The error wraps ErrInvalid and states the rule.
func ValidName(name string) error {
	if nameRe.MatchString(name) {
		return nil
	}
	return fmt.Errorf("%w function name %q: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit", ErrInvalid, name)
}

var digestRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

func validDigest(d string) error {
	if d == "" {
		return fmt.Errorf("%w digest: missing (PutCode returns it)", ErrInvalid)
	}
	if !digestRe.MatchString(d) {
		return fmt.Errorf("%w digest %q: want the sha256 of the wasm as 64 lowercase hex digits", ErrInvalid, d)
	}
	return nil
}

func currentKey(name string) string { return "fn." + name }

func versionKey(name string, v uint64) string { return fmt.Sprintf("ver.%s.%08d", name, v) }

// PutCode stores a module and returns its digest, the sha256 of wasm in lowercase hex. Storing
// the same bytes again stores nothing and returns the same digest. Empty code and code over
// the size limit (WithMaxCodeBytes) are rejected with ErrInvalid. The registry does not keep
// wasm after PutCode returns.
func (r *Registry) PutCode(ctx context.Context, wasm []byte) (string, error) {
	if len(wasm) == 0 {
		return "", fmt.Errorf("%w code: empty module", ErrInvalid)
	}
	if int64(len(wasm)) > r.maxCode {
		return "", fmt.Errorf("%w code: module is %d bytes, over the limit of %d bytes", ErrInvalid, len(wasm), r.maxCode)
	}
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])
	code, err := r.codeStore(ctx)
	if err != nil {
		return "", err
	}
	if _, err := code.GetInfo(ctx, digest); err == nil {
		return digest, nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", fmt.Errorf("cannot look up code %s: %w", digest, err)
	}
	packed := r.enc.EncodeAll(wasm, make([]byte, 0, len(wasm)/2))
	meta := jetstream.ObjectMeta{
		Name:     digest,
		Metadata: map[string]string{"encoding": "zstd", "size": strconv.Itoa(len(wasm))},
	}
	if _, err := code.Put(ctx, meta, bytes.NewReader(packed)); err != nil {
		return "", fmt.Errorf("cannot store code %s (%d bytes, %d compressed): %w", digest, len(wasm), len(packed), err)
	}
	return digest, nil
}

// Code returns the module stored under digest, decompressed and checked against the digest.
// It returns ErrNotFound if there is none, and an error if the stored bytes do not hash to
// digest. The caller owns the returned slice.
func (r *Registry) Code(ctx context.Context, digest string) ([]byte, error) {
	if err := validDigest(digest); err != nil {
		return nil, err
	}
	code, err := r.codeStore(ctx)
	if err != nil {
		return nil, err
	}
	packed, err := code.GetBytes(ctx, digest)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("cannot get code %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot get code %s: %w", digest, err)
	}
	wasm, err := r.dec.DecodeAll(packed, nil)
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return nil, fmt.Errorf("cannot decompress code %s: %w (the limit is %d bytes)", digest, err, r.maxCode)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot decompress code %s (%d bytes): %w", digest, len(packed), err)
	}
	if sum := sha256.Sum256(wasm); hex.EncodeToString(sum[:]) != digest {
		return nil, fmt.Errorf("code %s is corrupt: its %d bytes hash to %x", digest, len(wasm), sum)
	}
	return wasm, nil
}

// codeSize returns the uncompressed size of stored code, or an ErrInvalid error naming the
// digest if there is no such code.
func (r *Registry) codeSize(ctx context.Context, digest string) (int64, error) {
	code, err := r.codeStore(ctx)
	if err != nil {
		return 0, err
	}
	info, err := code.GetInfo(ctx, digest)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, fmt.Errorf("%w digest %s: no such code; store it with PutCode first", ErrInvalid, digest)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot look up code %s: %w", digest, err)
	}
	size, err := strconv.ParseInt(info.Metadata["size"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("code %s has no valid size in its metadata: %w", digest, err)
	}
	return size, nil
}

func validate(f *Function) error {
	if err := ValidName(f.Name); err != nil {
		return err
	}
	if err := validDigest(f.Digest); err != nil {
		return err
	}
	if f.Tenant != "" && !nameRe.MatchString(f.Tenant) {
		return fmt.Errorf("%w tenant %q: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit", ErrInvalid, f.Tenant)
	}
	if f.Route != "" && !strings.HasPrefix(f.Route, "/") {
		return fmt.Errorf("%w route %q: must start with '/'", ErrInvalid, f.Route)
	}
	l := f.Limits
	if l.MemoryMiB < 0 || l.TimeoutMs < 0 || l.MaxRequestBytes < 0 || l.MaxResponseBytes < 0 || l.MaxInstances < 0 {
		return fmt.Errorf("%w limits %+v: must not be negative (0 means the platform default)", ErrInvalid, l)
	}
	for k, v := range f.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return fmt.Errorf("%w environment variable %q: names must be non-empty without '=' or NUL, values without NUL", ErrInvalid, k)
		}
	}
	return nil
}

// Deploy stores f as a new version of f.Name and makes it current. It sets Version (the
// current version plus one, or 1 for a new name), Size (from the code store) and Created,
// and returns the stored record; f.Version, f.Size, f.Created and f.RollbackOf are ignored.
// The code must have been stored with PutCode.
//
// Concurrent deploys of one name, from any process, always get distinct versions, and the
// current version only ever moves forward: if a deploy finishes after a later one has become
// current, its version is kept (Version finds it) but does not become current. Deploy returns
// ErrConflict if the function is deleted while being deployed. While a name exists, a version
// number that has been current is never used again; a deploy that lost a race may claim again
// a number it gave up, and one that crashed halfway may leave one skipped. After Delete, the
// name starts again at 1.
func (r *Registry) Deploy(ctx context.Context, f Function) (Function, error) {
	if err := validate(&f); err != nil {
		return Function{}, fmt.Errorf("cannot deploy: %w", err)
	}
	size, err := r.codeSize(ctx, f.Digest)
	if err != nil {
		return Function{}, fmt.Errorf("cannot deploy function %q: %w", f.Name, err)
	}
	f.Size = size
	f.RollbackOf = 0
	origin, err := r.origin(ctx)
	if err != nil {
		return Function{}, fmt.Errorf("cannot deploy function %q: %w", f.Name, err)
	}
	cur, rev, _, err := r.last(ctx, f.Name)
	if err != nil {
		return Function{}, fmt.Errorf("cannot deploy function %q: %w", f.Name, err)
	}
	return r.publish(ctx, origin, f, cur, rev, "deploy")
}

// publish stores f as a new version of f.Name and makes it current, as Deploy documents. cur
// and rev are what last read before anything else: the current record (zero if there is
// none) and the revision of the current key (0 if it was never written).
//
// Each attempt claims the next free version number after cur by creating its record, then
// moves the current key with a compare-and-set on rev, the revision read before the claim.
// When that succeeds, no Delete purged the current key between the read and the move, so a
// Delete that came before it purged the key before the claim, and Delete leaves alone the
// records written after the key it purged. When it fails, the claim is given up and the next
// attempt reads again: a compare-and-set on a revision read after the claim could make current
// a record that a racing Delete is about to purge.
func (r *Registry) publish(ctx context.Context, origin jetstream.KeyValue, f Function, cur Function, rev uint64, what string) (Function, error) {
	f.Created = time.Now().UTC()
	for attempt := 0; ; attempt++ {
		if attempt == maxAttempts {
			return Function{}, fmt.Errorf("cannot %s function %q: %w: current version kept changing", what, f.Name, ErrConflict)
		}
		rec, verRev, err := claim(ctx, origin, &f, cur.Version, what)
		if err != nil {
			return Function{}, err
		}
		_, err = origin.Update(ctx, currentKey(f.Name), rec, rev)
		if err == nil {
			return f, nil
		}
		if !isCASFailure(err) {
			return Function{}, fmt.Errorf("cannot make function %q version %d current: %w", f.Name, f.Version, err)
		}
		now, nowRev, live, err := r.last(ctx, f.Name)
		switch {
		case err != nil:
			return Function{}, fmt.Errorf("cannot %s function %q: %w", what, f.Name, err)
		case live && now.Version >= f.Version:
			return f, nil // a later deploy is already current; this version is kept
		}
		_ = origin.Purge(ctx, versionKey(f.Name, f.Version), jetstream.LastRevision(verRev))
		if !live {
			return Function{}, fmt.Errorf("cannot %s function %q: %w: it was deleted during the %s", what, f.Name, ErrConflict, what)
		}
		cur, rev = now, nowRev
	}
}

// claim stores f as the first free version of f.Name after cur, setting f.Version, and returns
// the record and its revision. Create fails if the key exists, so two deploys never claim one
// version.
func claim(ctx context.Context, origin jetstream.KeyValue, f *Function, cur uint64, what string) ([]byte, uint64, error) {
	for v, attempt := cur+1, 0; ; v, attempt = v+1, attempt+1 {
		if attempt == maxAttempts {
			return nil, 0, fmt.Errorf("cannot %s function %q: %w: versions %d to %d taken by concurrent deploys", what, f.Name, ErrConflict, cur+1, v-1)
		}
		f.Version = v
		rec, err := json.Marshal(f)
		if err != nil {
			return nil, 0, fmt.Errorf("cannot encode function %q: %w", f.Name, err)
		}
		verRev, err := origin.Create(ctx, versionKey(f.Name, v), rec)
		if err == nil {
			return rec, verRev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, 0, fmt.Errorf("cannot store function %q version %d (%d bytes): %w", f.Name, v, len(rec), err)
		}
	}
}

// last reads the current record of name at the origin with the revision a compare-and-set
// of it must name (see natsnode.Bucket.Last); live is false if there is no current record.
func (r *Registry) last(ctx context.Context, name string) (f Function, rev uint64, live bool, err error) {
	data, rev, live, err := r.bucket.Last(ctx, currentKey(name))
	if err != nil || !live {
		return Function{}, rev, live, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return Function{}, 0, false, fmt.Errorf("cannot decode %s (revision %d): %w", currentKey(name), rev, err)
	}
	return f, rev, true, nil
}

func isCASFailure(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// current reads the current record of name from kv and the revision it was read at.
func current(ctx context.Context, kv jetstream.KeyValue, name string) (Function, uint64, error) {
	e, err := kv.Get(ctx, currentKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Function{}, 0, fmt.Errorf("function %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Function{}, 0, fmt.Errorf("cannot read function %q: %w", name, err)
	}
	f, err := decode(e)
	return f, e.Revision(), err
}

func decode(e jetstream.KeyValueEntry) (Function, error) {
	var f Function
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return Function{}, fmt.Errorf("cannot decode %s (revision %d): %w", e.Key(), e.Revision(), err)
	}
	return f, nil
}

// Get returns the current version of the function name, or ErrNotFound.
func (r *Registry) Get(ctx context.Context, name string) (Function, error) {
	if err := ValidName(name); err != nil {
		return Function{}, fmt.Errorf("cannot get function: %w", err)
	}
	f, _, err := current(ctx, r.meta, name)
	if err != nil {
		return Function{}, fmt.Errorf("cannot get function %q: %w", name, unwrapNotFound(err))
	}
	return f, nil
}

// unwrapNotFound keeps error texts short: current already names the function.
func unwrapNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	return err
}

// Version returns version v of the function name, current or not, or ErrNotFound.
func (r *Registry) Version(ctx context.Context, name string, v uint64) (Function, error) {
	if err := ValidName(name); err != nil {
		return Function{}, fmt.Errorf("cannot get function: %w", err)
	}
	return version(ctx, r.meta, name, v)
}

func version(ctx context.Context, kv jetstream.KeyValue, name string, v uint64) (Function, error) {
	e, err := kv.Get(ctx, versionKey(name, v))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Function{}, fmt.Errorf("cannot get function %q version %d: %w", name, v, ErrNotFound)
	}
	if err != nil {
		return Function{}, fmt.Errorf("cannot get function %q version %d: %w", name, v, err)
	}
	return decode(e)
}

// Versions returns every stored version of the function name, oldest first, or ErrNotFound
// if it has none. The current one is Get's; the others are what Rollback can go back to.
func (r *Registry) Versions(ctx context.Context, name string) ([]Function, error) {
	if err := ValidName(name); err != nil {
		return nil, fmt.Errorf("cannot list versions: %w", err)
	}
	fns, err := versions(ctx, r.meta, name)
	if err != nil {
		return nil, fmt.Errorf("cannot list versions of function %q: %w", name, err)
	}
	if len(fns) == 0 {
		return nil, fmt.Errorf("cannot list versions of function %q: %w", name, ErrNotFound)
	}
	return fns, nil
}

func versions(ctx context.Context, kv jetstream.KeyValue, name string) ([]Function, error) {
	entries, err := scan(ctx, kv, "ver."+name+".*")
	if err != nil {
		return nil, err
	}
	fns := make([]Function, 0, len(entries))
	for _, e := range entries {
		f, err := decode(e)
		if err != nil {
			return nil, err
		}
		fns = append(fns, f)
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].Version < fns[j].Version })
	return fns, nil
}

// Rollback makes version v of the function name current again, by deploying a copy of it as
// a new version with RollbackOf set to v, and returns the new current record. v = 0 means
// the version before the current one: the highest version below it. Rollback returns
// ErrNotFound if the function or the version does not exist, and ErrInvalid if v is already
// current or there is no earlier version. It races with Deploy as two deploys do.
func (r *Registry) Rollback(ctx context.Context, name string, v uint64) (Function, error) {
	if err := ValidName(name); err != nil {
		return Function{}, fmt.Errorf("cannot roll back: %w", err)
	}
	origin, err := r.origin(ctx)
	if err != nil {
		return Function{}, fmt.Errorf("cannot roll back function %q: %w", name, err)
	}
	cur, rev, live, err := r.last(ctx, name)
	if err != nil {
		return Function{}, fmt.Errorf("cannot roll back function %q: %w", name, err)
	}
	if !live {
		return Function{}, fmt.Errorf("cannot roll back function %q: %w", name, ErrNotFound)
	}
	if v == 0 {
		all, err := versions(ctx, origin, name)
		if err != nil {
			return Function{}, fmt.Errorf("cannot roll back function %q: %w", name, err)
		}
		for _, f := range all {
			if f.Version < cur.Version {
				v = f.Version
			}
		}
		if v == 0 {
			return Function{}, fmt.Errorf("cannot roll back function %q: %w: version %d is its first", name, ErrInvalid, cur.Version)
		}
	}
	if v == cur.Version {
		return Function{}, fmt.Errorf("cannot roll back function %q to version %d: %w: it is the current version", name, v, ErrInvalid)
	}
	f, err := version(ctx, origin, name, v)
	if err != nil {
		return Function{}, fmt.Errorf("cannot roll back function %q: %w", name, err)
	}
	f.RollbackOf = v
	return r.publish(ctx, origin, f, cur, rev, "roll back")
}

// List returns the current version of every function, sorted by name.
func (r *Registry) List(ctx context.Context) ([]Function, error) {
	entries, err := scan(ctx, r.meta, "fn.*")
	if err != nil {
		return nil, fmt.Errorf("cannot list functions: %w", err)
	}
	fns := make([]Function, 0, len(entries))
	for _, e := range entries {
		f, err := decode(e)
		if err != nil {
			return nil, fmt.Errorf("cannot list functions: %w", err)
		}
		fns = append(fns, f)
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
	return fns, nil
}

// scan returns the live entries of kv whose keys match pattern, as of the call.
func scan(ctx context.Context, kv jetstream.KeyValue, pattern string) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer stopWatch(w)
	var entries []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watch ended before delivering all entries")
			}
			if e == nil {
				return entries, nil
			}
			entries = append(entries, e)
		case <-ctx.Done():
			return nil, ctx.Err()
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

// Delete removes the function name: its current record first, so readers stop seeing it at
// once, then its versions. It returns ErrNotFound if there is no such function. Code is not
// deleted: other functions may share it.
func (r *Registry) Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("cannot delete function: %w", err)
	}
	origin, err := r.origin(ctx)
	if err != nil {
		return fmt.Errorf("cannot delete function %q: %w", name, err)
	}
	var rev uint64
	for attempt := 0; ; attempt++ {
		if attempt == maxAttempts {
			return fmt.Errorf("cannot delete function %q: %w: it kept changing", name, ErrConflict)
		}
		_, curRev, err := current(ctx, origin, name)
		if err != nil {
			return fmt.Errorf("cannot delete function %q: %w", name, unwrapNotFound(err))
		}
		err = origin.Purge(ctx, currentKey(name), jetstream.LastRevision(curRev))
		if err == nil {
			rev = curRev
			break
		}
		if !isCASFailure(err) {
			return fmt.Errorf("cannot delete function %q: %w", name, err)
		}
	}
	// Versions written after rev were claimed after the purge: they belong to the name's next
	// life, or to deploys that will give them up. Leave them alone. A deploy that claimed
	// before the purge cannot make its claim current now (see publish).
	entries, err := scan(ctx, origin, "ver."+name+".*")
	if err != nil {
		return fmt.Errorf("cannot list versions of deleted function %q: %w", name, err)
	}
	for _, e := range entries {
		if e.Revision() > rev {
			continue
		}
		err := origin.Purge(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
		if err != nil && !isCASFailure(err) {
			return fmt.Errorf("cannot delete %s of deleted function %q: %w", e.Key(), name, err)
		}
	}
	return nil
}

// Watch reports the current versions of all functions and their changes: first one event per
// existing function (the state at the call), then one Ready event, then every deploy,
// rollback and delete as it happens. A deploy that does not become current (see Deploy) is
// not reported.
//
// When the connection to NATS is lost and comes back, Watch reads the whole state again and
// reports only the differences (functions deployed, rolled back or deleted meanwhile), so
// that a watcher never misses a change and never needs to start over.
//
// The channel is closed when ctx ends or the node the registry was opened on closes; the
// caller must keep receiving until then.
func (r *Registry) Watch(ctx context.Context) (<-chan Event, error) {
	out := make(chan Event, 64)
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		case <-r.node.Done():
			return false
		}
	}
	var (
		known   = map[string]Function{} // as last reported
		initial = true                  // receiving a state, not changes
		ready   bool                    // Ready was sent
		seen    map[string]bool         // functions in the state read again after a restart
	)
	deliver := func(u kvwatch.Update) bool {
		switch u.Kind {
		case kvwatch.Reset:
			initial, seen = true, map[string]bool{}
			return true
		case kvwatch.Ready:
			initial = false
			for name := range known {
				if seen != nil && !seen[name] { // deleted while the watch was down
					delete(known, name)
					if !send(Event{Name: name}) {
						return false
					}
				}
			}
			seen = nil
			if !ready {
				ready = true
				return send(Event{Ready: true})
			}
			return true
		}
		e := u.Entry
		name := strings.TrimPrefix(e.Key(), "fn.")
		if e.Operation() != jetstream.KeyValuePut {
			if initial {
				return true // a function deleted before the watch (re)started
			}
			delete(known, name)
			return send(Event{Name: name})
		}
		f, err := decode(e)
		if err != nil {
			return true // not written by Deploy; nothing a watcher could use
		}
		if seen != nil {
			seen[name] = true
		}
		if k, ok := known[name]; ok && k.Version == f.Version && k.Created.Equal(f.Created) {
			return true // unchanged across a restart
		}
		known[name] = f
		return send(Event{Name: name, Function: &f})
	}
	o := kvwatch.Options{Filters: []string{"fn.*"}}
	if err := kvwatch.Start(ctx, r.node, r.meta, o, deliver, func() { close(out) }); err != nil {
		return nil, fmt.Errorf("cannot watch functions: %w", err)
	}
	return out, nil
}
