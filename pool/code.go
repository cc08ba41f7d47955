package pool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/zstd"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/pool/cowmem"
	"github.com/wispfn/wisp/pool/profile"
	"github.com/wispfn/wisp/pool/snapshot"
)

// code is the executable form of one function version: the module its instances are created
// from and, when it could be pre-initialized, the memory image they start from.
//
// Pre-initialized code (image != nil) is the rewritten snapshot module: instantiating it runs no
// guest code, and its memory is a private copy-on-write mapping of the image. Other code is the
// original module, initialized (_initialize, wisp_start) at every instantiation.
type code struct {
	key    string // content key: module, environment, warm-up, format; functions with equal keys share code
	served []byte // module instances are created from
	// wz is the runtime served is compiled in: Runtime.fast when served has an interrupt flag
	// (interruptible), Runtime.guard otherwise.
	wz            wazero.Runtime
	interruptible bool
	image         *cowmem.Image
	clock         int64     // guest monotonic clock at the snapshot
	base          time.Time // when the snapshot was loaded in this process
	// reqBuf is the request buffer the guest allocated before the snapshot (address and size;
	// 0 if none): every instance starts with it, so a cold start makes no wisp_alloc call.
	reqBuf, reqBufSize uint32
	// firstWrites are the pages of the image a probe request wrote (snapshot.Snapshot.FirstWrites):
	// staged memories have them copied ahead of the first request. firstReads are the pages
	// it only read (cowmem.Tracker): staged memories have them mapped in ahead.
	firstWrites, firstReads []uint32

	refs int // functions using this code; guarded by Runtime.mu

	mu       sync.Mutex            // guards the fields below
	compiled wazero.CompiledModule // nil while evicted
	users    int                   // live instances using compiled or profiled, and running profiles
	lastUse  time.Time             // of compiled, for LRU eviction
	retired  bool                  // no new instances; closed with the last one
	// profiled is served compiled with function listeners, for the instances of profiles
	// (profile.go): nil until the first profile, and again once evicted. profFns names its
	// functions.
	profiled wazero.CompiledModule
	profFns  *profile.Functions
	profMu   sync.Mutex // serializes compiling profiled; taken before mu, never under it
}

// initTimeout bounds pre-initialization (interpreting or compiling the instrumented copy,
// _initialize, wisp_start, warm-up, probe) when the function's own deadline is shorter.
const initTimeout = time.Minute

// snapshotFormat versions what is stored under Config.SnapshotDir.
const snapshotFormat = "wisp-snapshot-5" // 2: modules carry the interrupt flag; 3: and a request buffer; 4: and first writes; 5: and first reads

func codeKey(wasm []byte, env []string, warmUp bool) string {
	h := sha256.New()
	h.Write([]byte(snapshotFormat))
	h.Write([]byte{0})
	h.Write(wasm)
	for _, kv := range env {
		h.Write([]byte{0})
		h.Write([]byte(kv))
	}
	if warmUp {
		h.Write([]byte{0, 'w'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// prepare turns a module into code: it loads a stored snapshot of it, or takes one (and stores
// it), or, for a module a snapshot cannot capture, keeps the original. A module that fails to
// initialize is an error.
func (r *Runtime) prepare(ctx context.Context, spec Spec, key string, env []string, lim Limits, logw *lineLogger) (*code, bool, error) {
	if c, err := r.loadSnapshot(key); err == nil {
		return c, true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("stored snapshot unusable; taking a new one", "function", spec.Name, "key", key, "error", err)
	}
	wasm, err := snapshot.InstrumentInterrupt(spec.Wasm)
	interruptible := err == nil
	switch {
	case errors.Is(err, snapshot.ErrUnsupported):
		r.log.Info("module cannot carry an interrupt flag; its deadlines use wazero's slower context checks", "function", spec.Name, "reason", err)
		wasm = spec.Wasm
	case err != nil:
		return nil, false, err
	}
	rt := r.guard
	if interruptible {
		rt = r.fast
	}
	// The deadline covers compiling the instrumented copy too, which takes seconds for a large
	// module on a busy machine; it exists to refuse a guest that never finishes initializing.
	tctx, cancel := context.WithTimeout(ctx, max(lim.Timeout, initTimeout))
	defer cancel()
	opt := snapshot.Options{Env: env, Stdout: logw.stream("stdout"), Stderr: logw.stream("stderr")}
	var reqBuf uint32
	opt.WarmUp = func(ctx context.Context, mod api.Module) error {
		if spec.WarmUp {
			if err := warmUp(ctx, mod); err != nil {
				return err
			}
		}
		var err error
		reqBuf, err = allocRequestBuffer(ctx, mod)
		return err
	}
	// The memory of the instance pre-initialized is tracked, so that the probe tells the pages
	// it reads from those it writes.
	var firstReads []uint32
	tracker := cowmem.NewTracker()
	if tracker != nil {
		defer tracker.Close()
		tctx = experimental.WithMemoryAllocator(tctx, tracker)
	}
	opt.Probe = func(ctx context.Context, mod api.Module) error {
		firstReads = nil
		if reqBuf == 0 {
			return nil
		}
		tracked := tracker != nil && tracker.Restart(uint64(mod.Memory().Size())) == nil
		// The probe is the host's request, not a client's: what the handler prints for it
		// would read as a request nobody made.
		logw.muted.Store(true)
		defer logw.muted.Store(false)
		if err := probe(ctx, mod, reqBuf); err != nil {
			return err
		}
		if tracked {
			firstReads, _, _ = tracker.Touched() // a hint: none if the kernel does not tell
		}
		return nil
	}
	snap, err := r.takeSnapshot(tctx, wasm, opt)
	if errors.Is(err, snapshot.ErrUnsupported) || errors.Is(err, snapshot.ErrNotReactor) {
		r.log.Info("module cannot be pre-initialized; instances will initialize themselves", "function", spec.Name, "reason", err)
		return &code{key: key, served: wasm, wz: rt, interruptible: interruptible}, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	img, err := cowmem.NewImage(snap.Memory)
	if err != nil {
		return nil, false, fmt.Errorf("cannot map snapshot memory: %w", err)
	}
	c := &code{key: key, served: snap.Module, image: img, clock: snap.Clock, base: time.Now(), wz: rt, interruptible: interruptible}
	if reqBuf != 0 {
		c.reqBuf, c.reqBufSize, c.firstWrites, c.firstReads = reqBuf, requestBufferSize, snap.FirstWrites, firstReads
	}
	if err := r.storeSnapshot(key, snap, c); err != nil {
		r.log.Warn("cannot store snapshot; it will be taken again after a restart", "function", spec.Name, "error", err)
	}
	return c, false, nil
}

var (
	snapshotsInterpreted = metrics.NewCounter(`wisp_pool_snapshots_total{engine="interpreter"}`)
	snapshotsCompiled    = metrics.NewCounter(`wisp_pool_snapshots_total{engine="compiler"}`)
)

// interpretBudget is how long pre-initialization may run in the interpreter before it is
// started over compiled: about what compiling a module of size bytes costs (wazero's
// optimizing compiler, ~0.4 s per MB measured on Go guests), so a slow start costs at most
// about twice the compile. Go's runtime initialization interprets in ~0.1 s, against ~1 s to
// compile a 2.9 MB hello first.
var interpretBudget = func(size int) time.Duration {
	return max(250*time.Millisecond, time.Duration(size)*400*time.Nanosecond)
}

// takeSnapshot pre-initializes wasm in the interpreter, which needs no compile, and starts
// over in the compiler if that runs past interpretBudget. Any other outcome, the guest's
// failure included, is the interpreter's: the guest's wasm semantics are the same in both.
func (r *Runtime) takeSnapshot(ctx context.Context, wasm []byte, opt snapshot.Options) (*snapshot.Snapshot, error) {
	ictx, cancel := context.WithTimeout(ctx, interpretBudget(len(wasm)))
	snap, err := snapshot.Take(ictx, r.interp, wasm, opt)
	overBudget := err != nil && ictx.Err() != nil && ctx.Err() == nil
	cancel()
	if !overBudget {
		if err == nil {
			snapshotsInterpreted.Inc()
		}
		return snap, err
	}
	if snap, err = snapshot.Take(ctx, r.guard, wasm, opt); err == nil {
		snapshotsCompiled.Inc()
	}
	return snap, err
}

// warmUp runs one synthetic GET / before the snapshot, so lazy first-call work of the guest
// (first allocations, caches filled on first use) is in the image too. The response is discarded;
// a guest that fails it fails the deploy.
func warmUp(ctx context.Context, mod api.Module) error {
	req := &abi.Request{Method: []byte("GET"), URI: []byte("/"), FullURI: []byte("/"), Host: []byte("localhost"), RemoteAddr: []byte("127.0.0.1:0")}
	size := uint64(abi.RequestSize(req))
	alloc, handle := mod.ExportedFunction(exportAlloc), mod.ExportedFunction(exportHandle)
	if alloc == nil || handle == nil {
		return fmt.Errorf("module exports no %s or %s", exportAlloc, exportHandle)
	}
	res, err := alloc.Call(ctx, size)
	if err != nil {
		return fmt.Errorf("%s: %w", exportAlloc, err)
	}
	view, ok := mod.Memory().Read(uint32(res[0]), uint32(size))
	if !ok {
		return fmt.Errorf("%s returned a buffer outside memory", exportAlloc)
	}
	abi.AppendRequest(view[:0], req)
	if _, err := handle.Call(ctx, res[0], size); err != nil {
		return fmt.Errorf("%s: %w", exportHandle, err)
	}
	return nil
}

// requestBufferSize is the size of the request buffer a guest allocates before its snapshot,
// and the least the request path asks wisp_alloc for.
const requestBufferSize = 4096

// allocRequestBuffer has the guest allocate its request buffer (wisp_alloc) before the snapshot,
// so that the allocation, and the first call's setup in the guest, are not paid by every cold
// start. It returns the buffer's address, or 0 when the module exports no wisp_alloc or its
// answer is unusable (instances then allocate on their first request, where a broken guest
// fails as such).
func allocRequestBuffer(ctx context.Context, mod api.Module) (uint32, error) {
	alloc := mod.ExportedFunction(exportAlloc)
	if alloc == nil {
		return 0, nil
	}
	res, err := alloc.Call(ctx, requestBufferSize)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", exportAlloc, err)
	}
	ptr := uint32(res[0])
	if _, ok := mod.Memory().Read(ptr, requestBufferSize); !ok || ptr == 0 {
		return 0, nil
	}
	return ptr, nil
}

// probe serves the synthetic request of warmUp the way a restored instance serves its first
// one, in the request buffer of the snapshot, after the snapshot was captured: the pages it
// writes are what staged memories copy ahead (cowmem.Staged). Hostcalls are refused, as
// during initialization; a guest that fails it is not refused (its first request is only
// a hint), it gets no staging.
func probe(ctx context.Context, mod api.Module, reqBuf uint32) error {
	req := &abi.Request{Method: []byte("GET"), URI: []byte("/"), FullURI: []byte("/"), Host: []byte("localhost"), RemoteAddr: []byte("127.0.0.1:0")}
	size := uint32(abi.RequestSize(req))
	view, ok := mod.Memory().Read(reqBuf, size)
	handle := mod.ExportedFunction(exportHandle)
	if !ok || handle == nil {
		return nil
	}
	abi.AppendRequest(view[:0], req)
	_, _ = handle.Call(ctx, uint64(reqBuf), uint64(size))
	return nil
}

// snapshotMeta is the small JSON file that completes a stored snapshot.
type snapshotMeta struct {
	Format        string `json:"format"`
	Clock         int64  `json:"clock"`
	Pages         int    `json:"pages"`
	Interruptible bool   `json:"interruptible"`
	// RequestBuffer and RequestBufferSize are code.reqBuf and code.reqBufSize.
	RequestBuffer     uint32 `json:"request_buffer,omitempty"`
	RequestBufferSize uint32 `json:"request_buffer_size,omitempty"`
	// FirstWrites and FirstReads are code.firstWrites and code.firstReads.
	FirstWrites []uint32 `json:"first_writes,omitempty"`
	FirstReads  []uint32 `json:"first_reads,omitempty"`
}

func (r *Runtime) snapshotPaths(key string) (wasm, mem, meta string) {
	base := filepath.Join(r.snapDir, key)
	return base + ".wasm", base + ".mem.zst", base + ".json"
}

// storeSnapshot writes module, memory image (zstd) and metadata, each atomically; the metadata
// goes last, so a snapshot without it is incomplete and ignored.
func (r *Runtime) storeSnapshot(key string, s *snapshot.Snapshot, c *code) error {
	if r.snapDir == "" {
		return nil
	}
	if err := os.MkdirAll(r.snapDir, 0o755); err != nil {
		return err
	}
	wasmPath, memPath, metaPath := r.snapshotPaths(key)
	if err := writeFileAtomic(wasmPath, s.Module); err != nil {
		return err
	}
	if err := writeFileAtomic(memPath, zstdEncoder.EncodeAll(s.Memory, nil)); err != nil {
		return err
	}
	meta, _ := json.Marshal(snapshotMeta{Format: snapshotFormat, Clock: s.Clock, Pages: len(s.Memory) / wasmPage,
		Interruptible: c.interruptible, RequestBuffer: c.reqBuf, RequestBufferSize: c.reqBufSize, FirstWrites: c.firstWrites, FirstReads: c.firstReads})
	return writeFileAtomic(metaPath, meta)
}

// loadSnapshot reads a stored snapshot; os.ErrNotExist if there is none.
func (r *Runtime) loadSnapshot(key string) (*code, error) {
	if r.snapDir == "" {
		return nil, os.ErrNotExist
	}
	wasmPath, memPath, metaPath := r.snapshotPaths(key)
	metaBytes, err := os.ReadFile(metaPath)
	if err != nil {
		return nil, err
	}
	var meta snapshotMeta
	if err := json.Unmarshal(metaBytes, &meta); err != nil || meta.Format != snapshotFormat {
		return nil, fmt.Errorf("bad snapshot metadata %s: %v", metaPath, err)
	}
	served, err := os.ReadFile(wasmPath)
	if err != nil {
		return nil, err
	}
	zmem, err := os.ReadFile(memPath)
	if err != nil {
		return nil, err
	}
	mem, err := zstdDecoder.DecodeAll(zmem, make([]byte, 0, meta.Pages*wasmPage))
	if err != nil || len(mem) != meta.Pages*wasmPage {
		return nil, fmt.Errorf("bad snapshot memory %s: %d bytes, want %d pages: %v", memPath, len(mem), meta.Pages, err)
	}
	img, err := cowmem.NewImage(mem)
	if err != nil {
		return nil, err
	}
	rt := r.guard
	if meta.Interruptible {
		rt = r.fast
	}
	if end := uint64(meta.RequestBuffer) + uint64(meta.RequestBufferSize); end > uint64(len(mem)) {
		img.Close()
		return nil, fmt.Errorf("bad snapshot metadata %s: request buffer %#x+%d outside memory of %d bytes", metaPath, meta.RequestBuffer, meta.RequestBufferSize, len(mem))
	}
	for what, pages := range map[string][]uint32{"write": meta.FirstWrites, "read": meta.FirstReads} {
		for _, p := range pages {
			if uint64(p+1)*snapshot.PageSize > uint64(len(mem)) {
				img.Close()
				return nil, fmt.Errorf("bad snapshot metadata %s: first %s of page %d outside memory of %d bytes", metaPath, what, p, len(mem))
			}
		}
	}
	return &code{key: key, served: served, image: img, clock: meta.Clock, base: time.Now(), wz: rt, interruptible: meta.Interruptible,
		reqBuf: meta.RequestBuffer, reqBufSize: meta.RequestBufferSize, firstWrites: meta.FirstWrites, firstReads: meta.FirstReads}, nil
}

func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, bytes.NewReader(b))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

var (
	zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
)

// allocator returns the memory allocator of instances of c under lim, and the staged
// allocator among them to close with the function (nil if none).
func (c *code) allocator(lim Limits, budget *cowmem.StageBudget) (experimental.MemoryAllocator, *cowmem.Staged) {
	switch {
	case c.image == nil:
		return limitAllocator(lim.MemoryBytes), nil
	case len(c.firstWrites) > 0:
		s := c.image.Staged(lim.MemoryBytes, c.firstWrites, c.firstReads, budget)
		return s, s
	}
	return c.image.Allocator(lim.MemoryBytes), nil
}
