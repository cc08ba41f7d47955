package bundle

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wispfn/wisp/sdk/bundle/internal/bundlegen"
)

func TestBundleIsFresh(t *testing.T) {
	for _, b := range bundlegen.Bundles {
		t.Run(b.Output, func(t *testing.T) {
			want, err := bundlegen.Render(b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(b.Output)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s is stale: %s changed since it was generated; run `go generate ./sdk/bundle` and commit the result",
					b.Output, b.Dir)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		sdk  *SDK
		src  string
		want []string
	}{
		{"go", Go, "../go", []string{"go.mod", "faas/faas.go", "faas/http/http.go", "internal/abi/abi.go"}},
		{"js", JS, "../js", []string{"go.mod", "go.sum", "engine/engine.go", "engine/prelude.js"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.sdk.Write(dir); err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, f := range tc.sdk.Files() {
				paths = append(paths, f.Path)
				got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
				if err != nil {
					t.Fatal(err)
				}
				want, err := os.ReadFile(filepath.Join(tc.src, filepath.FromSlash(f.Path)))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from %s", f.Path, tc.src)
				}
				if data, ok := tc.sdk.File(f.Path); !ok || data != string(want) {
					t.Errorf("File(%q) = %d bytes, %v; want the file", f.Path, len(data), ok)
				}
			}
			list := strings.Join(paths, " ")
			for _, want := range tc.want {
				if !strings.Contains(list, want) {
					t.Errorf("bundle lacks %s; has %s", want, list)
				}
			}
			if strings.Contains(list, "_test.go") || strings.Contains(list, "testdata") {
				t.Errorf("bundle holds tests or test data: %s", list)
			}
			if _, ok := tc.sdk.File("nope.go"); ok {
				t.Error("File(nope.go) found a file")
			}
		})
	}
	if Go.Module() != "github.com/wispfn/wisp/sdk/go" || JS.Module() != "github.com/wispfn/wisp/sdk/js" {
		t.Errorf("modules %s and %s", Go.Module(), JS.Module())
	}
	if Go.Digest() == JS.Digest() || len(Go.Digest()) != 64 {
		t.Errorf("digests %s and %s", Go.Digest(), JS.Digest())
	}
}
