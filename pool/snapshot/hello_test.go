package snapshot_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/pool/snapshot"
	"github.com/wispfn/wisp/sdk/build"
)

var (
	helloOnce sync.Once
	helloWasm []byte
	helloErr  error
)

// hello returns examples/hello built by sdk/build, as `wisp build` does.
func hello(tb testing.TB) []byte {
	tb.Helper()
	guest(tb) // creates guestDir, or skips without a toolchain
	helloOnce.Do(func() {
		out := filepath.Join(guestDir, "hello.wasm")
		if helloErr = build.Build(context.Background(), build.Options{Dir: "../../examples/hello", Out: out}); helloErr == nil {
			helloWasm, helloErr = os.ReadFile(out)
		}
	})
	if helloErr != nil {
		tb.Fatal(helloErr)
	}
	return helloWasm
}

var helloRequest = abi.Request{
	Method:     []byte("GET"),
	URI:        []byte("/"),
	FullURI:    []byte("/hello/"),
	Host:       []byte("example.com"),
	RemoteAddr: []byte("192.0.2.1:1234"),
	Headers:    []abi.Header{{Name: []byte("Accept"), Value: []byte("*/*")}},
}

// serve sends one request to a guest through the ABI (wisp_alloc, then
// wisp_handle) and returns its response, copied out of guest memory.
func serve(ctx context.Context, mod api.Module, req *abi.Request) (abi.Response, error) {
	enc := abi.AppendRequest(nil, req)
	res, err := mod.ExportedFunction("wisp_alloc").Call(ctx, uint64(len(enc)))
	if err != nil {
		return abi.Response{}, fmt.Errorf("wisp_alloc: %w", err)
	}
	ptr := uint32(res[0])
	if ptr == 0 || !mod.Memory().Write(ptr, enc) {
		return abi.Response{}, fmt.Errorf("wisp_alloc(%d) returned %#x", len(enc), ptr)
	}
	if res, err = mod.ExportedFunction("wisp_handle").Call(ctx, uint64(ptr), uint64(len(enc))); err != nil {
		return abi.Response{}, fmt.Errorf("wisp_handle: %w", err)
	}
	b, ok := mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	if !ok {
		return abi.Response{}, fmt.Errorf("wisp_handle returned %#x, outside memory", res[0])
	}
	var resp abi.Response
	if err := abi.DecodeResponse(bytes.Clone(b), &resp); err != nil {
		return abi.Response{}, err
	}
	return resp, nil
}

func TestHelloRestored(t *testing.T) {
	rt := newRuntime(t)
	warmUp := func(ctx context.Context, mod api.Module) error {
		_, err := serve(ctx, mod, &helloRequest)
		return err
	}
	tests := []struct {
		name string
		opt  snapshot.Options
	}{
		{"initialized", snapshot.Options{}},
		{"warmed up", snapshot.Options{WarmUp: warmUp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			snap, err := snapshot.Take(ctx, rt, hello(t), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			r := prepare(t, rt, snap)
			for i := range 2 {
				mod := r.instance(t, rt, 64<<20, nil)
				for j := range 3 {
					resp, err := serve(ctx, mod, &helloRequest)
					if err != nil {
						t.Fatalf("instance %d, request %d: %v", i, j, err)
					}
					if resp.Status != 200 || string(resp.Body) != "Hello WASM from Golang!" {
						t.Errorf("instance %d, request %d: got %d %q; want 200 %q", i, j, resp.Status, resp.Body, "Hello WASM from Golang!")
					}
				}
			}
		})
	}
}
