// Package bundle carries the sources of the Go guest SDK (module github.com/wispfn/wisp/sdk/go)
// inside the wisp binary, so that `wisp build` never fetches the SDK over the network.
//
// The SDK is a separate module, out of reach of //go:embed; its files are copied into
// sdk_gen.go by `go generate ./sdk/bundle`, and a test fails when that copy is stale.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

//go:generate go run gen.go

// Module is the module path of the bundled SDK.
const Module = "github.com/wispfn/wisp/sdk/go"

// File is one file of the bundled SDK.
type File struct {
	Path string // slash-separated, relative to the module root
	Data string
}

// Files returns the SDK's files, sorted by Path; go.mod is among them.
func Files() []File {
	return slices.Clone(files)
}

// Digest is the sha256 (hex) of the SDK's files: paths and contents.
func Digest() string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s%d:", len(f.Path), f.Path, len(f.Data))
		h.Write([]byte(f.Data))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Write writes the SDK's files under dir, which it creates if needed, so that dir becomes the
// root of the SDK module.
func Write(dir string) error {
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("cannot write the Go SDK into %q: %w", dir, err)
		}
		if err := os.WriteFile(path, []byte(f.Data), 0o644); err != nil {
			return fmt.Errorf("cannot write the Go SDK into %q: %w", dir, err)
		}
	}
	return nil
}
