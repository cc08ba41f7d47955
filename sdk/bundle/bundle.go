// Package bundle carries the sources of the guest SDKs inside the wisp binary, so that `wisp
// build` never fetches them over the network: the Go SDK (module github.com/wispfn/wisp/sdk/go)
// and the JavaScript engine (module github.com/wispfn/wisp/sdk/js).
//
// The SDKs are separate modules, out of reach of //go:embed; their files are copied into
// sdk_gen.go and js_gen.go by `go generate ./sdk/bundle`, and a test fails when a copy is stale.
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

// File is one file of a bundled SDK.
type File struct {
	Path string // slash-separated, relative to the module root
	Data string
}

// SDK is one bundled SDK module. Its methods are safe for concurrent use.
type SDK struct {
	module string
	files  []File
}

var (
	// Go is the Go guest SDK, a module without dependencies.
	Go = &SDK{module: "github.com/wispfn/wisp/sdk/go", files: goFiles}

	// JS is the JavaScript engine: goja with the Web API, on top of the Go SDK (which its
	// go.mod replaces by ../go, a directive that applies only when it is the main module). Its
	// go.mod and go.sum name the third-party modules it needs; the go tool fetches those through
	// the module proxy (GOPROXY) on first use and checks them against go.sum.
	JS = &SDK{module: "github.com/wispfn/wisp/sdk/js", files: jsFiles}
)

// Module returns the module path of the SDK.
func (s *SDK) Module() string { return s.module }

// Files returns the SDK's files, sorted by Path; go.mod is among them.
func (s *SDK) Files() []File {
	return slices.Clone(s.files)
}

// File returns the data of the file at path, and whether the SDK has it.
func (s *SDK) File(path string) (string, bool) {
	i, ok := slices.BinarySearchFunc(s.files, path, func(f File, p string) int {
		switch {
		case f.Path < p:
			return -1
		case f.Path > p:
			return 1
		}
		return 0
	})
	if !ok {
		return "", false
	}
	return s.files[i].Data, true
}

// Digest is the sha256 (hex) of the SDK's files: paths and contents.
func (s *SDK) Digest() string {
	h := sha256.New()
	for _, f := range s.files {
		fmt.Fprintf(h, "%d:%s%d:", len(f.Path), f.Path, len(f.Data))
		h.Write([]byte(f.Data))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Write writes the SDK's files under dir, which it creates if needed, so that dir becomes the
// root of the SDK module.
func (s *SDK) Write(dir string) error {
	for _, f := range s.files {
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("cannot write the SDK %s into %q: %w", s.module, dir, err)
		}
		if err := os.WriteFile(path, []byte(f.Data), 0o644); err != nil {
			return fmt.Errorf("cannot write the SDK %s into %q: %w", s.module, dir, err)
		}
	}
	return nil
}
