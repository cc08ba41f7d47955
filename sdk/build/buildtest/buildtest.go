// Package buildtest builds the functions in examples/ to wasm for tests and benchmarks, once
// per test binary, with the same build engine as `wisp build`: Go functions and JavaScript ones
// (jshello, jsecho) alike.
package buildtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/wispfn/wisp/sdk/build"
)

var (
	mu    sync.Mutex
	built = map[string]*example{}
)

type example struct {
	once sync.Once
	wasm []byte
	err  error
	log  string
}

// CacheDir returns a wazero compilation cache directory shared by every test process of this
// user, so each example is compiled once rather than once per test (compiling is slow under the
// race detector). wazero keys entries by module hash, wazero version and architecture.
func CacheDir(tb testing.TB) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("wisp-test-compile-cache-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// SnapshotDir returns a directory of pre-initialized snapshots (pool.Config.SnapshotDir) shared
// like CacheDir: a module deployed by many tests is pre-initialized once, and the module served
// from its stored snapshot is byte for byte the same each time, so its compilation is a
// CacheDir hit. Snapshots are keyed by module, environment, warm-up and snapshot format.
func SnapshotDir(tb testing.TB) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("wisp-test-snapshots-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Dir returns the directory of examples/NAME in this source tree.
func Dir(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "examples", name)
}

// Wasm returns examples/NAME built to a wasm module, building it on first use. The returned
// slice is shared: callers must not modify it.
func Wasm(tb testing.TB, name string) []byte {
	tb.Helper()
	mu.Lock()
	e, ok := built[name]
	if !ok {
		e = &example{}
		built[name] = e
	}
	mu.Unlock()
	e.once.Do(func() {
		dir, err := os.MkdirTemp("", "wisp-example-")
		if err != nil {
			e.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, name+".wasm")
		var log bytes.Buffer
		if e.err = build.Build(context.Background(), build.Options{Dir: Dir(name), Out: out, Stdout: &log, Stderr: &log}); e.err != nil {
			e.log = log.String()
			return
		}
		e.wasm, e.err = os.ReadFile(out)
	})
	if e.err != nil {
		tb.Fatalf("cannot build examples/%s: %v\n%s", name, e.err, e.log)
	}
	return e.wasm
}
