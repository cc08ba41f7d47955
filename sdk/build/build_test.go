package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wispfn/wisp/pool/abi"
)

const examples = "../../examples"

// outDir holds the modules built by this test binary; each is built once (builds take seconds).
var (
	outDir string
	builds sync.Map // name → *builtModule
)

type builtModule struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wisp-build-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	outDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// built returns the path of the module that prepare's directory builds to, building it on first use.
func built(t *testing.T, name string, prepare func(t *testing.T, dir string)) string {
	t.Helper()
	v, _ := builds.LoadOrStore(name, &builtModule{})
	b := v.(*builtModule)
	b.once.Do(func() {
		dir := filepath.Join(outDir, name+"-src")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		prepare(t, dir)
		b.path = filepath.Join(outDir, name+".wasm")
		var stderr bytes.Buffer
		b.err = Build(context.Background(), Options{Dir: dir, Out: b.path, Stderr: &stderr})
		if b.err == nil {
			st, err := os.Stat(b.path)
			if err != nil {
				b.err = err
				return
			}
			t.Logf("built %s: %d bytes", name, st.Size())
		}
	})
	if b.err != nil {
		t.Fatalf("cannot build %s: %v", name, b.err)
	}
	return b.path
}

// copyExample returns a prepare func that copies examples/NAME/main.go, alone, into the directory.
func copyExample(name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		data, err := os.ReadFile(filepath.Join(examples, name, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "main.go"), string(data))
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// guest is one instance of a built module, driven as the host drives it (docs/abi.md).
type guest struct {
	ctx    context.Context
	mod    api.Module
	alloc  api.Function
	handle api.Function
	buf    uint32 // the buffer from wisp_alloc
	bufLen uint32
	stderr *bytes.Buffer
}

var instances atomic.Int64

// start compiles and instantiates the module at path with WASI, then runs _initialize and
// wisp_start.
func start(t *testing.T, path string, env ...string) *guest {
	t.Helper()
	return startWith(t, wazero.NewRuntimeConfig(), path, env...)
}

// startWith is start in a runtime of config cfg.
func startWith(t *testing.T, cfg wazero.RuntimeConfig, path string, env ...string) *guest {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	// The JavaScript engine imports the hostcalls; these tests make none.
	if err := instantiateNoRequest(ctx, rt); err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{ctx: ctx, stderr: &bytes.Buffer{}}
	mcfg := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("guest-%d", instances.Add(1))).
		WithStartFunctions().
		WithStderr(g.stderr).
		WithStdout(g.stderr)
	for i := 0; i+1 < len(env); i += 2 {
		mcfg = mcfg.WithEnv(env[i], env[i+1])
	}
	g.mod, err = rt.InstantiateModule(ctx, compiled, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"_initialize", "wisp_start"} {
		fn := g.mod.ExportedFunction(name)
		if fn == nil {
			t.Fatalf("module does not export %s", name)
		}
		if _, err := fn.Call(ctx); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, g.stderr)
		}
	}
	g.alloc, g.handle = g.mod.ExportedFunction("wisp_alloc"), g.mod.ExportedFunction("wisp_handle")
	if g.alloc == nil || g.handle == nil {
		t.Fatal("module lacks wisp_alloc or wisp_handle")
	}
	return g
}

// call sends req and returns the guest's decoded response, or the error of wisp_handle.
func (g *guest) call(t *testing.T, req *abi.Request) (abi.Response, error) {
	t.Helper()
	enc := abi.AppendRequest(nil, req)
	if uint32(len(enc)) > g.bufLen {
		res, err := g.alloc.Call(g.ctx, uint64(len(enc)))
		if err != nil {
			t.Fatalf("wisp_alloc: %v", err)
		}
		if res[0] == 0 {
			t.Fatal("wisp_alloc returned 0")
		}
		g.buf, g.bufLen = uint32(res[0]), uint32(len(enc))
	}
	if !g.mod.Memory().Write(g.buf, enc) {
		t.Fatal("request buffer is outside memory")
	}
	res, err := g.handle.Call(g.ctx, uint64(g.buf), uint64(len(enc)))
	if err != nil {
		return abi.Response{}, err
	}
	out, ok := g.mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	if !ok {
		t.Fatalf("response [%#x, +%d) is outside memory", res[0]>>32, uint32(res[0]))
	}
	var resp abi.Response
	if err := abi.DecodeResponse(out, &resp); err != nil {
		t.Fatalf("cannot decode the response: %v", err)
	}
	return resp, nil
}

func (g *guest) mustCall(t *testing.T, req *abi.Request) abi.Response {
	t.Helper()
	resp, err := g.call(t, req)
	if err != nil {
		t.Fatalf("wisp_handle: %v\n%s", err, g.stderr)
	}
	return resp
}

func header(resp abi.Response, name string) string {
	for _, h := range resp.Headers {
		if strings.EqualFold(string(h.Name), name) {
			return string(h.Value)
		}
	}
	return ""
}

func get(uri string) *abi.Request {
	return &abi.Request{Method: []byte("GET"), URI: []byte(uri), FullURI: []byte("/fn" + uri),
		Host: []byte("example.com"), RemoteAddr: []byte("192.0.2.1:4321")}
}

func TestHello(t *testing.T) {
	sdk, err := filepath.Abs("../go")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{"main.go alone", copyExample("hello")},
		{"own go.mod requiring the SDK", func(t *testing.T, dir string) {
			copyExample("hello")(t, dir)
			writeFile(t, filepath.Join(dir, "go.mod"),
				"module example.com/hello\n\ngo 1.24\n\nrequire github.com/wispfn/wisp/sdk/go v0.3.0\n")
		}},
		{"own go.mod without the SDK", func(t *testing.T, dir string) {
			copyExample("hello")(t, dir)
			writeFile(t, filepath.Join(dir, "go.mod"), "module example.com/hello\n\ngo 1.24\n")
		}},
		{"own go.mod replacing the SDK", func(t *testing.T, dir string) {
			copyExample("hello")(t, dir)
			rel, err := filepath.Rel(dir, sdk)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "go.mod"), "module example.com/hello\n\ngo 1.24\n\n"+
				"require github.com/wispfn/wisp/sdk/go v0.0.0\n\nreplace github.com/wispfn/wisp/sdk/go => "+rel+"\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := start(t, built(t, "hello "+tc.name, tc.prepare))
			for range 3 {
				resp := g.mustCall(t, get("/"))
				if resp.Status != 200 || header(resp, "Content-Type") != "text/plain" ||
					string(resp.Body) != "Hello WASM from Golang!" {
					t.Fatalf("got %d %q %q; want 200 text/plain %q", resp.Status, resp.Headers, resp.Body,
						"Hello WASM from Golang!")
				}
			}
		})
	}
}

func TestBuildLeavesDirAlone(t *testing.T) {
	built(t, "hello main.go alone", copyExample("hello"))
	entries, err := os.ReadDir(filepath.Join(outDir, "hello main.go alone-src"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "main.go" {
		t.Errorf("function directory holds %v; want only main.go", entries)
	}
}

// The same source builds to the same bytes, wherever its directory is: the deploy of a rebuilt
// function then hits the compilation cache and the stored snapshot, and the code store keeps
// one copy.
func TestBuildIsReproducible(t *testing.T) {
	first, err := os.ReadFile(built(t, "hello main.go alone", copyExample("hello")))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyExample("hello")(t, dir)
	out := filepath.Join(t.TempDir(), "again.wasm")
	if err := Build(context.Background(), Options{Dir: dir, Out: out}); err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Fatalf("two builds of one source differ (%d and %d bytes)", len(first), len(again))
	}
}

func echo(t *testing.T) string { return built(t, "echo", copyExample("echo")) }

func TestEcho(t *testing.T) {
	g := start(t, echo(t), "GREETING", "hi there")
	body := bytes.Repeat([]byte("0123456789"), 10000)
	req := &abi.Request{
		Method: []byte("POST"), URI: []byte("/a/b?x=1&env=GREETING&env=MISSING"),
		FullURI: []byte("/echo/a/b?x=1&env=GREETING&env=MISSING"), Host: []byte("fn.example.com"),
		RemoteAddr: []byte("198.51.100.7:1234"), Body: body,
	}
	req.AddHeader([]byte("content-type"), []byte("text/plain"))
	req.AddHeader([]byte("X-Multi"), []byte("1"))
	req.AddHeader([]byte("x-multi"), []byte("2"))
	resp := g.mustCall(t, req)
	if resp.Status != 200 || header(resp, "Content-Type") != "application/json" {
		t.Fatalf("got %d %q; want 200 application/json", resp.Status, resp.Headers)
	}
	var got struct {
		Method, Path, Host string
		RawQuery           string `json:"raw_query"`
		RequestURI         string `json:"request_uri"`
		RemoteAddr         string `json:"remote_addr"`
		Headers            map[string][]string
		BodyLength         int    `json:"body_length"`
		ContentLength      int    `json:"content_length"`
		BodySHA256         string `json:"body_sha256"`
		Env                map[string]string
	}
	if err := json.Unmarshal(resp.Body, &got); err != nil {
		t.Fatalf("%v in %s", err, resp.Body)
	}
	sum := sha256.Sum256(body)
	if got.Method != "POST" || got.Path != "/a/b" || got.RawQuery != "x=1&env=GREETING&env=MISSING" ||
		got.RequestURI != "/echo/a/b?x=1&env=GREETING&env=MISSING" || got.Host != "fn.example.com" ||
		got.RemoteAddr != "198.51.100.7:1234" || got.BodyLength != len(body) ||
		got.ContentLength != len(body) || got.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("wrong echo: %s", resp.Body)
	}
	if v := got.Headers["X-Multi"]; len(v) != 2 || v[0] != "1" || v[1] != "2" {
		t.Errorf("X-Multi = %q; want [1 2]", v)
	}
	if v := got.Headers["Content-Type"]; len(v) != 1 || v[0] != "text/plain" {
		t.Errorf("Content-Type = %q; want [text/plain]", v)
	}
	if got.Env["GREETING"] != "hi there" || got.Env["MISSING"] != "" || len(got.Env) != 2 {
		t.Errorf("env = %v; want GREETING=hi there and MISSING empty", got.Env)
	}

	// A smaller request reuses the buffer; a larger one makes the host ask for a new one.
	for _, tc := range []struct {
		uri    string
		status int
		size   int
	}{
		{"/status/418", 418, -1},
		{"/status/abc", 400, -1},
		{"/big?n=0", 200, 0},
		{"/big?n=1000000", 200, 1000000},
		{"/big?n=-1", 400, -1},
	} {
		resp := g.mustCall(t, get(tc.uri))
		if resp.Status != tc.status || tc.size >= 0 && len(resp.Body) != tc.size {
			t.Errorf("%s: got %d with %d bytes; want %d with %d", tc.uri, resp.Status, len(resp.Body),
				tc.status, tc.size)
		}
	}
}

func faults(t *testing.T) string { return built(t, "faults", copyExample("faults")) }

func TestFaults(t *testing.T) {
	g := start(t, faults(t))
	for i := 1; i <= 2; i++ {
		resp := g.mustCall(t, get("/"))
		if resp.Status != 200 || header(resp, "X-Count") != strconv.Itoa(i) {
			t.Fatalf("request %d: got %d X-Count %q; want 200 and %d", i, resp.Status, header(resp, "X-Count"), i)
		}
	}
	resp := g.mustCall(t, get("/panic"))
	if resp.Status != 0 || !strings.Contains(string(resp.Body), "panic: faults: /panic asked for a panic") ||
		!strings.Contains(string(resp.Body), "main.handle") {
		t.Errorf("/panic: got %d %q; want status 0 with the panic message and a stack", resp.Status, resp.Body)
	}

	_, err := start(t, faults(t)).call(t, get("/exit"))
	var exit *sys.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("/exit: got %v; want exit code 3", err)
	}
}

func TestGuestFailures(t *testing.T) {
	t.Run("not started", func(t *testing.T) {
		// _initialize only: main never ran, so faas.Start was not called.
		ctx := context.Background()
		rt := wazero.NewRuntime(ctx)
		defer rt.Close(ctx)
		wasi_snapshot_preview1.MustInstantiate(ctx, rt)
		code, err := os.ReadFile(built(t, "hello main.go alone", copyExample("hello")))
		if err != nil {
			t.Fatal(err)
		}
		mod, err := rt.InstantiateWithConfig(ctx, code, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
		if err != nil {
			t.Fatal(err)
		}
		g := &guest{ctx: ctx, mod: mod, alloc: mod.ExportedFunction("wisp_alloc"),
			handle: mod.ExportedFunction("wisp_handle")}
		resp := g.mustCall(t, get("/"))
		if resp.Status != 0 || string(resp.Body) != "faas.Start was not called" {
			t.Errorf("got %d %q; want 0 %q", resp.Status, resp.Body, "faas.Start was not called")
		}
	})
	t.Run("request outside the buffer", func(t *testing.T) {
		g := start(t, built(t, "hello main.go alone", copyExample("hello")))
		g.mustCall(t, get("/"))
		res, err := g.handle.Call(g.ctx, uint64(g.buf+g.bufLen-4), 8)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := g.mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
		var resp abi.Response
		if err := abi.DecodeResponse(out, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Status != 0 || !strings.Contains(string(resp.Body), "outside the buffer") {
			t.Errorf("got %d %q; want a status 0 about the buffer", resp.Status, resp.Body)
		}
	})
	t.Run("malformed request", func(t *testing.T) {
		g := start(t, built(t, "hello main.go alone", copyExample("hello")))
		g.mustCall(t, get("/"))
		g.mod.Memory().Write(g.buf, []byte{1, 0, 0, 0, 0xff, 0xff, 0, 0})
		res, err := g.handle.Call(g.ctx, uint64(g.buf), 8)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := g.mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
		var resp abi.Response
		if err := abi.DecodeResponse(out, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Status != 0 || !strings.Contains(string(resp.Body), "method length 65535 past end") {
			t.Errorf("got %d %q; want a status 0 about the method length", resp.Status, resp.Body)
		}
	})
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string // nil: the directory does not exist
		want  []string
	}{
		{"missing dir", nil, []string{"no such file or directory"}},
		{"no Go files", map[string]string{"README.md": "hi"}, []string{"no Go files"}},
		{"only tests", map[string]string{"main_test.go": "package main\n"}, []string{"no Go files"}},
		{"not package main", map[string]string{"lib.go": "package lib\n\nfunc F() {}\n"},
			[]string{"package lib is not a function", "package main"}},
		{"no func main", map[string]string{"main.go": "package main\n\nfunc handler() {}\n"},
			[]string{"no func main"}},
		{"syntax error", map[string]string{"main.go": "package main\n\nfunc main() {\n"},
			[]string{"main.go"}},
		{"compile error", map[string]string{"main.go": "package main\n\nfunc main() { undefinedThing() }\n"},
			[]string{"./main.go:3:15: undefined: undefinedThing"}},
		{"unknown import", map[string]string{"main.go": "package main\n\nimport _ \"example.com/nope\"\n\nfunc main() {}\n"},
			[]string{"example.com/nope", "add a go.mod"}},
		{"reserved file name", map[string]string{"main.go": "package main\n\nfunc main() {}\n",
			startFile: "package main\n"}, []string{startFile + " is reserved"}},
		{"bad go.mod", map[string]string{"main.go": "package main\n\nfunc main() {}\n", "go.mod": "module\n"},
			[]string{"go.mod"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "fn")
			for name, data := range tc.files {
				writeFile(t, filepath.Join(dir, name), data)
			}
			err := Build(context.Background(), Options{Dir: dir, Out: filepath.Join(t.TempDir(), "out.wasm")})
			if err == nil {
				t.Fatal("Build succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestBuildOptionErrors(t *testing.T) {
	dir := filepath.Join(examples, "hello")
	for _, tc := range []struct {
		name string
		opt  Options
		want string
	}{
		{"no dir", Options{Out: "x.wasm"}, "no directory given"},
		{"no out", Options{Dir: dir}, "no output file given"},
		{"no go", Options{Dir: dir, Out: filepath.Join(t.TempDir(), "x.wasm"), GoBin: "/nonexistent/go"},
			"/nonexistent/go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Build(context.Background(), tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Build(ctx, Options{Dir: filepath.Join(examples, "hello"), Out: filepath.Join(t.TempDir(), "x.wasm")})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v; want an error wrapping context.Canceled", err)
	}
}
