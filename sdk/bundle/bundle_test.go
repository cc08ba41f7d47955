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
	want, err := bundlegen.Render("../go")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(bundlegen.Output)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: sdk/go changed since it was generated; run `go generate ./sdk/bundle` and commit the result",
			bundlegen.Output)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range Files() {
		paths = append(paths, f.Path)
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("../go", filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from sdk/go", f.Path)
		}
	}
	list := strings.Join(paths, " ")
	for _, want := range []string{"go.mod", "faas/faas.go", "faas/http/http.go", "internal/abi/abi.go"} {
		if !strings.Contains(list, want) {
			t.Errorf("bundle lacks %s; has %s", want, list)
		}
	}
	if strings.Contains(list, "_test.go") || strings.Contains(list, "testdata") {
		t.Errorf("bundle holds tests or test data: %s", list)
	}
}
