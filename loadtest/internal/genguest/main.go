// Command genguest builds examples/hello with Wisp's build engine and writes it zstd-compressed,
// for the cold-start scenario to carry inside the wisp binary. Run by `go generate ./loadtest/guest`.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/wispfn/wisp/sdk/build"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: genguest FUNCTION_DIR OUT.wasm.zst")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "genguest:", err)
		os.Exit(1)
	}
}

func run(dir, out string) error {
	tmp, err := os.MkdirTemp("", "genguest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	wasmPath := filepath.Join(tmp, "guest.wasm")
	if err := build.Build(context.Background(), build.Options{Dir: dir, Out: wasmPath, Stdout: os.Stderr, Stderr: os.Stderr}); err != nil {
		return err
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return err
	}
	return os.WriteFile(out, enc.EncodeAll(wasm, nil), 0o644)
}
