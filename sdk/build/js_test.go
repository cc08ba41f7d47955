package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// copyJSExample returns a prepare func that copies examples/NAME/index.js, alone, into the
// directory.
func copyJSExample(name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		data, err := os.ReadFile(filepath.Join(examples, name, jsScript))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, jsScript), string(data))
	}
}

// TestJSHello builds examples/jshello and serves it as the host does. The module is run in
// wazero's interpreter: compiling its 10 MB of code takes minutes under the race detector
// (examples/jsecho and the compiled engine are tested end to end, in cmd/wisp).
func TestJSHello(t *testing.T) {
	g := startWith(t, wazero.NewRuntimeConfigInterpreter(), built(t, "jshello", copyJSExample("jshello")))
	for _, tc := range []struct{ uri, want string }{
		{"/", "Hello WASM from JavaScript! GET /"},
		{"/a/b?x=1", "Hello WASM from JavaScript! GET /a/b"},
	} {
		resp := g.mustCall(t, get(tc.uri))
		if resp.Status != 200 || header(resp, "Content-Type") != "text/plain" || string(resp.Body) != tc.want {
			t.Fatalf("GET %s: got %d %q %q; want 200 text/plain %q", tc.uri, resp.Status, resp.Headers, resp.Body, tc.want)
		}
	}
	// A handler's failure is a guest failure (status 0) carrying the JavaScript error, as a Go
	// function's panic is: a request with an unparsable Host makes jshello's new URL throw.
	req := get("/")
	req.Host = []byte("bad host")
	resp := g.mustCall(t, req)
	if resp.Status != 0 || !strings.Contains(string(resp.Body), "Uncaught (in promise) TypeError: Invalid URL") ||
		!strings.Contains(string(resp.Body), "index.js:") {
		t.Errorf("bad Host: got %d %q; want status 0 with the TypeError and its stack", resp.Status, resp.Body)
	}
	// Nothing but index.js is in the directory, and it is left alone.
	entries, err := os.ReadDir(filepath.Join(outDir, "jshello-src"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != jsScript {
		t.Errorf("function directory holds %v; want only index.js", entries)
	}
}

// TestJSBuildErrors: what a JavaScript function directory can get wrong. Scripts that throw
// are refused the same way as these, by the engine's start (sdk/js tests its messages).
func TestJSBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"index.js and Go files", map[string]string{jsScript: "run(() => {})", "main.go": "package main\n", "util.go": "package main\n"},
			[]string{"both index.js and Go files (main.go, util.go)"}},
		{"index.js not a file", map[string]string{"index.js/x": "run(() => {})"}, []string{"index.js is not a regular file"}},
		{"syntax error", map[string]string{jsScript: "run(async (request) => {\n  return new Response('x'\n});\n"},
			[]string{"cannot compile index.js", "SyntaxError", "Line 3:1"}},
		{"no handler", map[string]string{jsScript: "function handler(request) { return new Response('x'); }\n"},
			[]string{"index.js registered no handler", "run(handler)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "fn")
			for name, data := range tc.files {
				writeFile(t, filepath.Join(dir, name), data)
			}
			out := filepath.Join(t.TempDir(), "out.wasm")
			err := Build(context.Background(), Options{Dir: dir, Out: out})
			if err == nil {
				t.Fatal("Build succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed build left %s", out)
			}
		})
	}
}
