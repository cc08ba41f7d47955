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
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go/jetstream"

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
	// Created is when Deploy stored this version (UTC).
	Created time.Time `json:"created"`
}

// Event is one change seen by Watch.
type Event struct {
	// Name is the function that changed.
	Name string
	// Function is the function's new current version, or nil when it was deleted.
	Function *Function
}

// Registry stores functions and code. It is safe for concurrent use, by any number of
// processes sharing the same NATS JetStream. It needs no closing: it lives as long as the
// natsnode.Node it was opened on.
type Registry struct {
	meta    jetstream.KeyValue
	code    jetstream.ObjectStore
	enc     *zstd.Encoder
	dec     *zstd.Decoder
	maxCode int64
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
func Open(ctx context.Context, n *natsnode.Node, opts ...Option) (*Registry, error) {
	c := config{maxCode: DefaultMaxCodeBytes}
	for _, o := range opts {
		o(&c)
	}
	js := n.JetStream()
	meta, err := openKV(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("cannot open function bucket %q: %w", metaBucket, err)
	}
	code, err := openObjects(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("cannot open code store %q: %w", codeBucket, err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, fmt.Errorf("cannot create zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(c.maxCode)), zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("cannot create zstd decoder: %w", err)
	}
	return &Registry{meta: meta, code: code, enc: enc, dec: dec, maxCode: c.maxCode}, nil
}

func openKV(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, metaBucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      metaBucket,
		Description: "Wisp functions: fn.NAME current version, ver.NAME.N all versions",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, metaBucket) // created concurrently
	}
	return kv, err
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
	if _, err := r.code.GetInfo(ctx, digest); err == nil {
		return digest, nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", fmt.Errorf("cannot look up code %s: %w", digest, err)
	}
	packed := r.enc.EncodeAll(wasm, make([]byte, 0, len(wasm)/2))
	meta := jetstream.ObjectMeta{
		Name:     digest,
		Metadata: map[string]string{"encoding": "zstd", "size": strconv.Itoa(len(wasm))},
	}
	if _, err := r.code.Put(ctx, meta, bytes.NewReader(packed)); err != nil {
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
	packed, err := r.code.GetBytes(ctx, digest)
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
	info, err := r.code.GetInfo(ctx, digest)
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
// and returns the stored record; f.Version, f.Size and f.Created are ignored. The code must
// have been stored with PutCode.
//
// Concurrent deploys of one name, from any process, always get distinct versions, and the
// current version only ever moves forward: if a deploy finishes after a later one has become
// current, its version is kept (Version finds it) but does not become current. Deploy returns
// ErrConflict if the function is deleted while being deployed. While a name exists its version
// numbers are never reused; a deploy that crashed halfway may leave one skipped. After Delete,
// the name starts again at 1.
func (r *Registry) Deploy(ctx context.Context, f Function) (Function, error) {
	if err := validate(&f); err != nil {
		return Function{}, fmt.Errorf("cannot deploy: %w", err)
	}
	size, err := r.codeSize(ctx, f.Digest)
	if err != nil {
		return Function{}, fmt.Errorf("cannot deploy function %q: %w", f.Name, err)
	}
	f.Size = size
	f.Created = time.Now().UTC()

	cur, rev, err := r.current(ctx, f.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Function{}, fmt.Errorf("cannot deploy function %q: %w", f.Name, err)
	}

	// Claim the next free version number by creating its record: Create fails if the key
	// exists, so two deploys can never write the same version.
	var verRev uint64
	var rec []byte
	for v, attempt := cur.Version+1, 0; ; v, attempt = v+1, attempt+1 {
		if attempt == maxAttempts {
			return Function{}, fmt.Errorf("cannot deploy function %q: %w: versions %d to %d taken by concurrent deploys", f.Name, ErrConflict, cur.Version+1, v-1)
		}
		f.Version = v
		if rec, err = json.Marshal(f); err != nil {
			return Function{}, fmt.Errorf("cannot encode function %q: %w", f.Name, err)
		}
		verRev, err = r.meta.Create(ctx, versionKey(f.Name, v), rec)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Function{}, fmt.Errorf("cannot store function %q version %d (%d bytes): %w", f.Name, v, len(rec), err)
		}
	}

	// Move the current pointer forward with compare-and-set on the revision it was read at.
	for attempt := 0; ; attempt++ {
		if attempt == maxAttempts {
			return Function{}, fmt.Errorf("cannot deploy function %q version %d: %w: current version kept changing", f.Name, f.Version, ErrConflict)
		}
		if rev == 0 {
			_, err = r.meta.Create(ctx, currentKey(f.Name), rec)
		} else {
			_, err = r.meta.Update(ctx, currentKey(f.Name), rec, rev)
		}
		if err == nil {
			return f, nil
		}
		if !isCASFailure(err) {
			return Function{}, fmt.Errorf("cannot make function %q version %d current: %w", f.Name, f.Version, err)
		}
		cur, rev, err = r.current(ctx, f.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			// It existed when our compare-and-set failed and is gone now: deleted under us.
			_ = r.meta.Purge(ctx, versionKey(f.Name, f.Version), jetstream.LastRevision(verRev))
			return Function{}, fmt.Errorf("cannot deploy function %q: %w: it was deleted during the deploy", f.Name, ErrConflict)
		case err != nil:
			return Function{}, fmt.Errorf("cannot deploy function %q: %w", f.Name, err)
		case cur.Version >= f.Version:
			return f, nil // a later deploy is already current
		}
	}
}

func isCASFailure(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// current reads the current record of name and the revision it was read at.
func (r *Registry) current(ctx context.Context, name string) (Function, uint64, error) {
	e, err := r.meta.Get(ctx, currentKey(name))
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
	f, _, err := r.current(ctx, name)
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
	e, err := r.meta.Get(ctx, versionKey(name, v))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Function{}, fmt.Errorf("cannot get function %q version %d: %w", name, v, ErrNotFound)
	}
	if err != nil {
		return Function{}, fmt.Errorf("cannot get function %q version %d: %w", name, v, err)
	}
	return decode(e)
}

// List returns the current version of every function, sorted by name.
func (r *Registry) List(ctx context.Context) ([]Function, error) {
	entries, err := r.scan(ctx, "fn.*")
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

// scan returns the live entries whose keys match pattern, as of the call.
func (r *Registry) scan(ctx context.Context, pattern string) ([]jetstream.KeyValueEntry, error) {
	w, err := r.meta.Watch(ctx, pattern, jetstream.IgnoreDeletes())
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
	var rev uint64
	for attempt := 0; ; attempt++ {
		if attempt == maxAttempts {
			return fmt.Errorf("cannot delete function %q: %w: it kept changing", name, ErrConflict)
		}
		_, curRev, err := r.current(ctx, name)
		if err != nil {
			return fmt.Errorf("cannot delete function %q: %w", name, unwrapNotFound(err))
		}
		err = r.meta.Purge(ctx, currentKey(name), jetstream.LastRevision(curRev))
		if err == nil {
			rev = curRev
			break
		}
		if !isCASFailure(err) {
			return fmt.Errorf("cannot delete function %q: %w", name, err)
		}
	}
	// Versions written after rev belong to deploys that started after this delete (or that
	// raced with it and will fail with ErrConflict): leave them alone.
	versions, err := r.scan(ctx, "ver."+name+".*")
	if err != nil {
		return fmt.Errorf("cannot list versions of deleted function %q: %w", name, err)
	}
	for _, e := range versions {
		if e.Revision() > rev {
			continue
		}
		err := r.meta.Purge(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
		if err != nil && !isCASFailure(err) {
			return fmt.Errorf("cannot delete %s of deleted function %q: %w", e.Key(), name, err)
		}
	}
	return nil
}

// Watch reports changes to the current versions of all functions: first one event per
// existing function (the state at the call), then every deploy and delete as it happens.
// The channel is closed when ctx ends or the connection to NATS is closed; the caller must
// keep receiving until then. A deploy that does not become current (see Deploy) is not
// reported.
func (r *Registry) Watch(ctx context.Context) (<-chan Event, error) {
	w, err := r.meta.Watch(ctx, "fn.*")
	if err != nil {
		return nil, fmt.Errorf("cannot watch functions: %w", err)
	}
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer stopWatch(w)
		initial := true
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case e, ok = <-w.Updates():
				if !ok {
					return
				}
			case <-ctx.Done():
				return
			}
			if e == nil {
				initial = false
				continue
			}
			ev := Event{Name: strings.TrimPrefix(e.Key(), "fn.")}
			switch e.Operation() {
			case jetstream.KeyValuePut:
				f, err := decode(e)
				if err != nil {
					continue // not written by Deploy; nothing a watcher could use
				}
				ev.Function = &f
			default:
				if initial {
					continue // a function deleted before the watch began
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
