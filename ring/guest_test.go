package ring_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wispfn/wisp/kv/cache"
	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/store"
	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/ring"
	ringfetch "github.com/wispfn/wisp/ring/provider/fetch"
	ringkv "github.com/wispfn/wisp/ring/provider/kv"
	ringlog "github.com/wispfn/wisp/ring/provider/log"
	ringrpc "github.com/wispfn/wisp/ring/provider/rpc"
	"github.com/wispfn/wisp/sdk/build"
)

// The end-to-end harness: real guests built by the SDK's build engine, run by wazero with the
// ring's host module and all four providers, KV on the Local Cache over an embedded NATS. It
// calls guests the way the pool does (wisp_alloc, wisp_handle, docs/abi.md), bracketing each
// request with Instance.Begin and End.

var (
	guestOnce sync.Once
	guestWasm []byte
	guestErr  error

	natsOnce sync.Once
	natsNode *natsnode.Node
	natsDir  string
	natsErr  error

	compileCache = wazero.NewCompilationCache()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if natsNode != nil {
		natsNode.Close()
	}
	if natsDir != "" {
		os.RemoveAll(natsDir)
	}
	os.Exit(code)
}

// testGuest returns testdata/guest built to wasm, once per test binary.
func testGuest(tb testing.TB) []byte {
	tb.Helper()
	guestOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wisp-ring-guest-")
		if err != nil {
			guestErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "guest.wasm")
		var log bytes.Buffer
		if err := build.Build(context.Background(), build.Options{Dir: "testdata/guest", Out: out, Stdout: &log, Stderr: &log}); err != nil {
			guestErr = fmt.Errorf("%v\n%s", err, log.String())
			return
		}
		guestWasm, guestErr = os.ReadFile(out)
	})
	if guestErr != nil {
		tb.Fatalf("cannot build the test guest: %v", guestErr)
	}
	return guestWasm
}

func kvStores(tb testing.TB) *ringkv.Stores {
	tb.Helper()
	natsOnce.Do(func() {
		if natsDir, natsErr = os.MkdirTemp("", "wisp-ring-nats-"); natsErr == nil {
			natsNode, natsErr = natsnode.Start(context.Background(), natsnode.Options{Dir: natsDir})
		}
	})
	if natsErr != nil {
		tb.Fatalf("cannot start NATS: %v", natsErr)
	}
	s := ringkv.NewStores(func(ctx context.Context, ns string) (store.Store, error) {
		st, err := store.Open(ctx, natsNode, ns, store.Options{Storage: store.StorageMemory})
		if err != nil {
			return nil, err
		}
		return cache.New(st, cache.Options{})
	})
	tb.Cleanup(s.Close)
	return s
}

// node is a miniature Wisp node: one wazero runtime, one ring host, functions by name.
type node struct {
	tb    testing.TB
	rt    wazero.Runtime
	host  *ring.Host
	logs  *ringlog.Provider
	mu    sync.Mutex
	funcs map[string]*function
}

type function struct {
	name     string
	compiled wazero.CompiledModule
	ring     *ring.Function
	env      map[string]string
}

type nodeConfig struct {
	// noCloseOnDone compiles guests without wazero's close-on-context-done, whose checks at
	// every loop iteration dominate the cost of guest code (see bench_test.go).
	noCloseOnDone bool
	limits        ring.Limits
	fetch         ringfetch.Config
	rpc           ringrpc.Config
}

func newNode(tb testing.TB, cfg nodeConfig) *node {
	tb.Helper()
	ctx := context.Background()
	n := &node{tb: tb, funcs: map[string]*function{}, logs: ringlog.New(ringlog.Config{})}
	n.rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(compileCache).WithCloseOnContextDone(!cfg.noCloseOnDone))
	tb.Cleanup(func() { n.rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, n.rt)
	cfg.rpc.Invoker = n
	host, err := ring.New(ring.Config{
		Providers: []ring.Provider{
			n.logs,
			ringkv.New(ringkv.Config{Store: kvStores(tb)}),
			ringfetch.New(cfg.fetch),
			ringrpc.New(cfg.rpc),
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: cfg.limits,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { host.Close() })
	n.host = host
	if err := host.Instantiate(ctx, n.rt); err != nil {
		tb.Fatal(err)
	}
	return n
}

// deploy compiles wasm as function name.
func (n *node) deploy(name string, wasm []byte, cfg ring.FunctionConfig) *function {
	n.tb.Helper()
	compiled, err := n.rt.CompileModule(context.Background(), wasm)
	if err != nil {
		n.tb.Fatal(err)
	}
	cfg.Name = name
	rf, err := n.host.NewFunction(cfg)
	if err != nil {
		n.tb.Fatal(err)
	}
	f := &function{name: name, compiled: compiled, ring: rf, env: map[string]string{"SELF": name}}
	n.mu.Lock()
	n.funcs[name] = f
	n.mu.Unlock()
	return f
}

// instance is one live wasm instance with its ring state, as the pool keeps them.
type instance struct {
	n      *node
	mod    api.Module
	ring   *ring.Instance
	alloc  api.Function
	handle api.Function
	buf    uint32
	bufCap uint32
	stderr bytes.Buffer
}

func (n *node) instantiate(f *function) *instance {
	n.tb.Helper()
	in, err := n.newInstance(f)
	if err != nil {
		n.tb.Fatal(err)
	}
	return in
}

func (n *node) newInstance(f *function) (*instance, error) {
	in := &instance{n: n}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStderr(&in.stderr).WithSysWalltime().WithSysNanotime().WithRandSource(rand.Reader)
	for k, v := range f.env {
		cfg = cfg.WithEnv(k, v)
	}
	ctx := context.Background()
	mod, err := n.rt.InstantiateModule(ctx, f.compiled, cfg)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"_initialize", "wisp_start"} {
		if _, err := mod.ExportedFunction(name).Call(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	in.mod, in.ring = mod, f.ring.NewInstance()
	in.alloc, in.handle = mod.ExportedFunction("wisp_alloc"), mod.ExportedFunction("wisp_handle")
	return in, nil
}

func (in *instance) close() {
	in.ring.Close()
	in.mod.Close(context.Background())
}

type response struct {
	status int
	body   string
}

// serve runs one request, as the pool does: Begin, write the request into the guest's buffer,
// wisp_handle, decode, End.
func (in *instance) serve(ctx context.Context, req *abi.Request) (response, error) {
	rctx := in.ring.Begin(ctx)
	defer in.ring.End()
	size := uint32(abi.RequestSize(req))
	if size > in.bufCap {
		res, err := in.alloc.Call(rctx, uint64(size))
		if err != nil {
			return response{}, err
		}
		in.buf, in.bufCap = uint32(res[0]), size
	}
	view, _ := in.mod.Memory().Read(in.buf, size)
	abi.AppendRequest(view[:0], req)
	res, err := in.handle.Call(rctx, uint64(in.buf), uint64(size))
	if err != nil {
		return response{}, fmt.Errorf("%w; stderr: %s", err, in.stderr.String())
	}
	ptr, n := uint32(res[0]>>32), uint32(res[0])
	out, _ := in.mod.Memory().Read(ptr, n)
	var resp abi.Response
	if err := abi.DecodeResponse(out, &resp); err != nil {
		return response{}, err
	}
	return response{status: resp.Status, body: string(resp.Body)}, nil
}

func get(uri string) *abi.Request {
	return &abi.Request{Method: []byte("GET"), URI: []byte(uri), FullURI: []byte(uri), Host: []byte("test"), RemoteAddr: []byte("127.0.0.1:1")}
}

// call serves uri on in and fails the test on error.
func (in *instance) call(uri string) response {
	in.n.tb.Helper()
	r, err := in.serve(context.Background(), get(uri))
	if err != nil {
		in.n.tb.Fatalf("GET %s: %v", uri, err)
	}
	return r
}

// Invoke implements ringrpc.Invoker: a fresh instance of the callee serves each call.
func (n *node) Invoke(ctx context.Context, caller, name string, req *abi.Request, fn func(*abi.Response) error) error {
	n.mu.Lock()
	f := n.funcs[name]
	n.mu.Unlock()
	if f == nil {
		return fmt.Errorf("%w: %q", ringrpc.ErrNotFound, name)
	}
	in, err := n.newInstance(f)
	if err != nil {
		return err
	}
	defer in.close()
	rctx := in.ring.Begin(ctx)
	defer in.ring.End()
	size := uint32(abi.RequestSize(req))
	res, err := in.alloc.Call(rctx, uint64(size))
	if err != nil {
		return err
	}
	view, _ := in.mod.Memory().Read(uint32(res[0]), size)
	abi.AppendRequest(view[:0], req)
	if res, err = in.handle.Call(rctx, res[0], uint64(size)); err != nil {
		return err
	}
	out, _ := in.mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	var resp abi.Response
	if err := abi.DecodeResponse(out, &resp); err != nil {
		return err
	}
	return fn(&resp)
}
