package snapshot_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The test guest is built once per test binary, with the stock toolchain.
var (
	guestOnce sync.Once
	guestWasm []byte
	guestErr  error
	guestDir  string

	// cache is shared by the tests' runtimes: a Go guest takes seconds to
	// compile under the race detector.
	cache = wazero.NewCompilationCache()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if guestDir != "" {
		os.RemoveAll(guestDir)
	}
	os.Exit(code)
}

// buildGo builds the Go reactor in dir (relative to this package) with the
// stock toolchain into the file out and returns the wasm.
func buildGo(tb testing.TB, dir, out string) ([]byte, error) {
	tb.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		tb.Skipf("cannot build %s without a go toolchain: %v", dir, err)
	}
	cmd := exec.Command(gobin, "build", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cannot build %s: %v\n%s", dir, err, b)
	}
	return os.ReadFile(out)
}

// guest returns the test guest of testdata/guest.
func guest(tb testing.TB) []byte {
	tb.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		tb.Skipf("cannot build the test guest without a go toolchain: %v", err)
	}
	guestOnce.Do(func() {
		if guestDir, guestErr = os.MkdirTemp("", "wisp-snapshot-test-"); guestErr != nil {
			return
		}
		guestWasm, guestErr = buildGo(tb, "testdata/guest", filepath.Join(guestDir, "guest.wasm"))
	})
	if guestErr != nil {
		tb.Fatal(guestErr)
	}
	return guestWasm
}

// newRuntime returns a runtime with WASI preview 1 for one test, closed
// with it.
func newRuntime(tb testing.TB) wazero.Runtime {
	tb.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true))
	tb.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return rt
}

// call calls the exported function name of mod and returns its first result.
func call(tb testing.TB, mod api.Module, name string, params ...uint64) uint64 {
	tb.Helper()
	fn := mod.ExportedFunction(name)
	if fn == nil {
		tb.Fatalf("module does not export %s", name)
	}
	res, err := fn.Call(context.Background(), params...)
	if err != nil {
		tb.Fatalf("%s(%v): %v", name, params, err)
	}
	if len(res) == 0 {
		return 0
	}
	return res[0]
}
