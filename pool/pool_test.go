package pool_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/pool"
	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/sdk/build/buildtest"
)

func newRuntime(t testing.TB) *pool.Runtime {
	t.Helper()
	return runtimeWith(t, pool.Config{SnapshotDir: buildtest.SnapshotDir(t)})
}

// runtimeWith starts a runtime with cfg, the tests' compilation cache and a silent logger,
// closed when the test ends (if it was not before).
func runtimeWith(t testing.TB, cfg pool.Config) *pool.Runtime {
	t.Helper()
	cfg.CacheDir = buildtest.CacheDir(t)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := pool.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

func compile(t testing.TB, rt *pool.Runtime, example string, lim pool.Limits) *pool.Function {
	t.Helper()
	f, err := rt.Compile(context.Background(), pool.Spec{Name: example, Wasm: buildtest.Wasm(t, example), Limits: lim, Env: map[string]string{"GREETING": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func request(method, uri string) *abi.Request {
	return &abi.Request{Method: []byte(method), URI: []byte(uri), FullURI: []byte(uri), Host: []byte("test"), RemoteAddr: []byte("127.0.0.1:1")}
}

// result is a copy of a guest response, taken while the instance is held.
type result struct {
	status int
	header map[string]string
	body   string
}

func invoke(f *pool.Function, req *abi.Request) (result, error) {
	var r result
	err := f.Invoke(context.Background(), req, func(resp *abi.Response) error {
		r.status = resp.Status
		r.header = map[string]string{}
		for _, h := range resp.Headers {
			r.header[string(h.Name)] = string(h.Value)
		}
		r.body = string(resp.Body)
		return nil
	})
	return r, err
}

func TestHello(t *testing.T) {
	f := compile(t, newRuntime(t), "hello", pool.Limits{})
	r, err := invoke(f, request("GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 200 || r.body != "Hello WASM from Golang!" || r.header["Content-Type"] != "text/plain" {
		t.Fatalf("got %+v; want 200 text/plain Hello WASM from Golang!", r)
	}
}

func TestInstanceReusedAndDiscardedOnFault(t *testing.T) {
	f := compile(t, newRuntime(t), "faults", pool.Limits{MaxInstances: 1, Timeout: 2 * time.Second, MemoryBytes: 32 << 20})
	count := func() int {
		t.Helper()
		r, err := invoke(f, request("GET", "/ok"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(r.header["X-Count"])
		if err != nil {
			t.Fatalf("X-Count %q: %v", r.header["X-Count"], err)
		}
		return n
	}
	if a, b := count(), count(); b != a+1 {
		t.Fatalf("X-Count went %d then %d; want the one instance reused", a, b)
	}
	faults := []struct {
		path string
		kind pool.FaultKind
	}{
		{"/panic", pool.FaultPanic},
		{"/exit", pool.FaultExit},
		{"/oom", pool.FaultOOM},
		{"/loop", pool.FaultTimeout},
	}
	for _, tt := range faults {
		t.Run(tt.path, func(t *testing.T) {
			_, err := invoke(f, request("GET", tt.path))
			var ge *pool.GuestError
			if !errors.As(err, &ge) {
				t.Fatalf("%s: err = %v; want a *GuestError", tt.path, err)
			}
			if ge.Kind != tt.kind || ge.ID == "" || ge.Function != "faults" {
				t.Fatalf("%s: got %+v; want kind %s with an id", tt.path, ge, tt.kind)
			}
			if n := count(); n != 1 {
				t.Fatalf("after %s, X-Count = %d; want 1 (a fresh instance)", tt.path, n)
			}
		})
	}
}

func TestInstanceLimitQueuesThenServes(t *testing.T) {
	f := compile(t, newRuntime(t), "hello", pool.Limits{MaxInstances: 2})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := invoke(f, request("GET", "/"))
			if err == nil && r.status != 200 {
				err = fmt.Errorf("status %d", r.status)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.Live(); n > 2 {
		t.Errorf("%d live instances; want at most 2", n)
	}
}

func TestBusyWhenNoInstanceFreesInTime(t *testing.T) {
	f := compile(t, newRuntime(t), "faults", pool.Limits{MaxInstances: 1, Timeout: 300 * time.Millisecond})
	done := make(chan error, 1)
	go func() { _, err := invoke(f, request("GET", "/loop")); done <- err }()
	time.Sleep(50 * time.Millisecond) // let the loop take the only instance
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := f.Invoke(ctx, request("GET", "/ok"), func(*abi.Response) error { return nil })
	if !errors.Is(err, pool.ErrBusy) {
		t.Errorf("err = %v; want ErrBusy", err)
	}
	var ge *pool.GuestError
	if err := <-done; !errors.As(err, &ge) || ge.Kind != pool.FaultTimeout {
		t.Errorf("loop: err = %v; want a timeout fault", err)
	}
}

func TestCompileRefusesBadModules(t *testing.T) {
	rt := newRuntime(t)
	hello := buildtest.Wasm(t, "hello")
	tests := []struct {
		name string
		wasm []byte
		lim  pool.Limits
	}{
		{"empty", nil, pool.Limits{}},
		{"not wasm", []byte("hello world, not wasm"), pool.Limits{}},
		{"truncated", hello[:len(hello)/2], pool.Limits{}},
		{"no exports", []byte("\x00asm\x01\x00\x00\x00"), pool.Limits{}},
		{"memory limit below the module's minimum", hello, pool.Limits{MemoryBytes: 64 << 10}},
		{"negative timeout", hello, pool.Limits{Timeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rt.Compile(context.Background(), pool.Spec{Name: "bad", Wasm: tt.wasm, Limits: tt.lim})
			if !errors.Is(err, pool.ErrInvalidModule) {
				t.Fatalf("err = %v; want ErrInvalidModule", err)
			}
		})
	}
}

func TestClosedFunctionRefusesRequests(t *testing.T) {
	f := compile(t, newRuntime(t), "hello", pool.Limits{})
	f.Close()
	if _, err := invoke(f, request("GET", "/")); !errors.Is(err, pool.ErrClosed) {
		t.Fatalf("err = %v; want ErrClosed", err)
	}
}

func BenchmarkInvokeHello(b *testing.B) {
	f := compile(b, newRuntime(b), "hello", pool.Limits{})
	req := request("GET", "/")
	req.Headers = []abi.Header{{Name: []byte("Accept"), Value: []byte("*/*")}, {Name: []byte("User-Agent"), Value: []byte("bench")}}
	var n int
	fn := func(resp *abi.Response) error { n += len(resp.Body); return nil }
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.Invoke(ctx, req, fn); err != nil {
			b.Fatal(err)
		}
	}
	if n != b.N*len("Hello WASM from Golang!") {
		b.Fatalf("read %d body bytes over %d calls", n, b.N)
	}
}

func TestHeaderValidation(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		ok          bool
	}{
		{"Content-Type", "text/plain", true},
		{"X-A", "", true},
		{"", "v", false},
		{"Bad Name", "v", false},
		{"X-Inject", "a\r\nSet-Cookie: x=y", false},
		{"X-Nul", "a\x00b", false},
		{"X:Colon", "v", false},
	} {
		if got := pool.ValidHeader([]byte(tt.name), []byte(tt.value)); got != tt.ok {
			t.Errorf("ValidHeader(%q, %q) = %v; want %v", tt.name, tt.value, got, tt.ok)
		}
	}
}

// BenchmarkColdInvokeHello measures a cold start in the pool: every iteration finds no idle
// instance, instantiates one from the pre-initialized snapshot, serves the request on it and
// discards it.
func BenchmarkColdInvokeHello(b *testing.B) {
	for _, warm := range []bool{false, true} {
		b.Run(fmt.Sprintf("warmup=%v", warm), func(b *testing.B) {
			rt := newRuntime(b)
			f, err := rt.Compile(context.Background(), pool.Spec{Name: "hello", Wasm: buildtest.Wasm(b, "hello"), WarmUp: warm})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			req := request("GET", "/")
			ctx := context.Background()
			fn := func(resp *abi.Response) error {
				if resp.Status != 200 {
					return fmt.Errorf("status %d", resp.Status)
				}
				return nil
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pool.DiscardIdle(f)
				if err := f.Invoke(ctx, req, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSnapshotSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	spec := pool.Spec{Name: "echo", Wasm: buildtest.Wasm(t, "echo"), Env: map[string]string{"A": "1"}}
	var first string
	for i := 0; i < 2; i++ {
		rt := runtimeWith(t, pool.Config{SnapshotDir: dir})
		f, err := rt.Compile(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		r, err := invoke(f, request("GET", "/x?env=A"))
		if err != nil || r.status != 200 || !strings.Contains(r.body, `"A":"1"`) {
			t.Fatalf("run %d: %+v %v", i, r, err)
		}
		if !f.Preinitialized() {
			t.Fatalf("run %d: echo was not pre-initialized", i)
		}
		if i == 0 {
			first = f.CodeKey()
		} else if f.CodeKey() != first {
			t.Fatalf("code key changed across restart")
		}
		f.Close()
		_ = rt.Close(context.Background())
	}
	files, _ := filepath.Glob(filepath.Join(dir, first+".*"))
	if len(files) != 3 {
		t.Fatalf("snapshot files %v; want module, memory and metadata", files)
	}
}

// TestColdInstancesStartWithARequestBuffer checks that the request buffer the guest allocated
// before its snapshot survives storing and reloading, that cold instances serve requests that
// fit it and requests that do not, and that stored metadata naming a buffer or a first write
// outside the image is refused (the snapshot is taken again).
func TestColdInstancesStartWithARequestBuffer(t *testing.T) {
	dir := t.TempDir()
	spec := pool.Spec{Name: "echo", Wasm: buildtest.Wasm(t, "echo")}
	big := strings.Repeat("x", 10000)
	var key string
	var firstPtr uint32
	for run := range 5 {
		rt := runtimeWith(t, pool.Config{SnapshotDir: dir})
		f, err := rt.Compile(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		ptr, size := f.RequestBuffer()
		if ptr == 0 || size != 4096 {
			t.Fatalf("run %d: request buffer %#x+%d; want one of 4096 bytes", run, ptr, size)
		}
		if run == 0 {
			firstPtr = ptr
		} else if ptr != firstPtr { // a snapshot taken again allocates at the same address
			t.Fatalf("run %d: request buffer at %#x; want %#x as in the first run", run, ptr, firstPtr)
		}
		for _, p := range append(f.FirstWrites(), f.FirstReads()...) {
			if p >= 1<<20 {
				t.Fatalf("run %d: first writes %v or reads %v name a page past the image", run, f.FirstWrites(), f.FirstReads())
			}
		}
		for _, body := range []string{"", "small", big} {
			pool.DiscardIdle(f)
			req := request("POST", "/")
			req.Body = []byte(body)
			r, err := invoke(f, req)
			if err != nil || r.status != 200 || !strings.Contains(r.body, fmt.Sprintf(`"body_length":%d`, len(body))) {
				t.Fatalf("run %d: cold request with a body of %d bytes: %+v %v", run, len(body), r, err)
			}
		}
		key = f.CodeKey()
		f.Close()
		_ = rt.Close(context.Background())
		// The next runs find stored metadata naming a buffer past the end of memory, then a
		// first write, then a first read of a page past it: each is refused and the snapshot
		// taken again.
		if tamper := map[int]string{1: "request_buffer", 2: "first_writes", 3: "first_reads"}[run]; tamper != "" {
			path := filepath.Join(dir, key+".json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var meta map[string]any
			if err := json.Unmarshal(b, &meta); err != nil {
				t.Fatal(err)
			}
			if meta["request_buffer"] != float64(ptr) {
				t.Fatalf("stored metadata %s; want request_buffer %d", b, ptr)
			}
			if tamper == "request_buffer" {
				meta[tamper] = float64(1 << 31)
			} else {
				meta[tamper] = []any{float64(1 << 20)}
			}
			b, _ = json.Marshal(meta)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestIdenticalModulesShareCode deploys one module under several names, some at once: they
// share one compiled module and one snapshot image, each keeps serving while the others
// close, and the code is closed with the last of them. A different environment is different
// code.
func TestIdenticalModulesShareCode(t *testing.T) {
	rt := newRuntime(t)
	wasm := buildtest.Wasm(t, "hello")
	fns := make([]*pool.Function, 4)
	var wg sync.WaitGroup
	errs := make([]error, len(fns))
	for i := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fns[i], errs[i] = rt.Compile(context.Background(), pool.Spec{Name: fmt.Sprint("same-", i), Wasm: wasm})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("compile %d: %v", i, err)
		}
	}
	other, err := rt.Compile(context.Background(), pool.Spec{Name: "other-env", Wasm: wasm, Env: map[string]string{"GREETING": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i, f := range fns[1:] {
		if !pool.SharesCode(fns[0], f) {
			t.Fatalf("same-%d does not share same-0's code", i+1)
		}
	}
	if pool.SharesCode(fns[0], other) {
		t.Fatal("a function with another environment shares code")
	}
	if n := rt.SharedCodes(); n != 2 {
		t.Fatalf("%d codes in use; want 2", n)
	}
	for i, f := range fns {
		f.Close()
		if i == len(fns)-1 { // instances close off the caller's path; the code goes with them
			for deadline := time.Now().Add(10 * time.Second); !f.CodeClosed(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("code still open 10s after its last function closed")
				}
			}
		} else if f.CodeClosed() {
			t.Fatalf("after closing same-0..%d: code closed under same-%d", i, i+1)
		}
		for _, g := range fns[i+1:] {
			pool.DiscardIdle(g)
			if r, err := invoke(g, request("GET", "/")); err != nil || r.status != 200 {
				t.Fatalf("after closing same-0..%d, a cold request: %+v %v", i, r, err)
			}
		}
	}
	if n := rt.SharedCodes(); n != 1 {
		t.Fatalf("%d codes in use after closing the same-* functions; want 1", n)
	}
	again, err := rt.Compile(context.Background(), pool.Spec{Name: "again", Wasm: wasm})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if r, err := invoke(again, request("GET", "/")); err != nil || r.status != 200 {
		t.Fatalf("redeployed after its code closed: %+v %v", r, err)
	}
}

// TestPreinitializationInterpretsThenCompiles takes snapshots in wazero's interpreter, and
// starts over compiled when the interpreter runs past its budget; either way the function
// serves. (Not run in parallel: the budget is package state.)
func TestPreinitializationInterpretsThenCompiles(t *testing.T) {
	rt := runtimeWith(t, pool.Config{SnapshotDir: t.TempDir()})
	counts := func() (interpreted, compiled float64) {
		return max(metricValue(t, `wisp_pool_snapshots_total{engine="interpreter"}`), 0),
			max(metricValue(t, `wisp_pool_snapshots_total{engine="compiler"}`), 0)
	}
	for _, tt := range []struct {
		example string
		budget  time.Duration
		engine  string
	}{
		{"hello", time.Minute, "interpreter"}, // the default budget is tighter; -race is slow
		{"echo", time.Microsecond, "compiler"},
	} {
		pool.SetInterpretBudget(t, tt.budget)
		i0, c0 := counts()
		f, err := rt.Compile(context.Background(), pool.Spec{Name: tt.example, Wasm: buildtest.Wasm(t, tt.example)})
		if err != nil {
			t.Fatalf("%s: %v", tt.example, err)
		}
		defer f.Close()
		i1, c1 := counts()
		if got := map[bool]string{true: "interpreter", false: "compiler"}[i1 == i0+1 && c1 == c0]; got != tt.engine || (tt.engine == "compiler" && c1 != c0+1) {
			t.Fatalf("%s: snapshots interpreted %v→%v, compiled %v→%v; want one by the %s", tt.example, i0, i1, c0, c1, tt.engine)
		}
		if r, err := invoke(f, request("GET", "/")); err != nil || r.status != 200 {
			t.Fatalf("%s: %+v %v", tt.example, r, err)
		}
	}
}

// TestColdStartsUseStagedMemory checks that a function's cold starts take a memory staged
// ahead with the pages its first request writes already copied, one after the other as it
// refills, and that a runtime without staging memory stages nothing.
func TestColdStartsUseStagedMemory(t *testing.T) {
	hits := func() float64 { return max(metricValue(t, `wisp_cowmem_staged_total{outcome="hit"}`), 0) }
	for _, tt := range []struct {
		name   string
		staged int64
		want   float64
	}{{"default", 0, 3}, {"none", -1, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			rt := runtimeWith(t, pool.Config{SnapshotDir: buildtest.SnapshotDir(t), StagedMemory: tt.staged})
			f := compile(t, rt, "hello", pool.Limits{})
			if len(f.FirstWrites()) == 0 {
				t.Fatal("the snapshot recorded no first writes")
			}
			if _, err := os.Stat("/proc/self/pagemap"); err == nil && len(f.FirstReads()) == 0 {
				t.Fatal("the snapshot recorded no first reads")
			}
			before := hits()
			for i := range 3 {
				for deadline := time.Now().Add(10 * time.Second); tt.want > 0 && !f.StagedReady(); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("cold start %d: nothing staged after 10s", i)
					}
				}
				pool.DiscardIdle(f)
				if r, err := invoke(f, request("GET", "/")); err != nil || r.status != 200 {
					t.Fatalf("cold start %d: %+v %v", i, r, err)
				}
			}
			if got := hits() - before; got != tt.want {
				t.Fatalf("%v cold starts on staged memory; want %v", got, tt.want)
			}
		})
	}
}

// metricValue returns the value of one exported series, or -1 if it is absent.
func metricValue(t *testing.T, series string) float64 {
	t.Helper()
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

func TestIdleInstancesReapedAndCodeReloadedFromDisk(t *testing.T) {
	rt := runtimeWith(t, pool.Config{
		CodeBudget:  1, // every function without instances is over budget
		IdleTimeout: 100 * time.Millisecond,
	})
	f, err := rt.Compile(context.Background(), pool.Spec{Name: "tiers", Wasm: buildtest.Wasm(t, "hello")})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := f.Live(); n != 0 {
		t.Fatalf("%d live instances after deploy; want 0", n)
	}
	if r, err := invoke(f, request("GET", "/")); err != nil || r.status != 200 {
		t.Fatalf("first request: %+v %v", r, err)
	}
	// The reaper closes the idle instance, which makes the code evictable, and the tiny
	// budget evicts it.
	deadline := time.Now().Add(10 * time.Second)
	for f.Live() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if f.Live() != 0 {
		t.Fatal("idle instance not reaped")
	}
	if v := metricValue(t, `wisp_pool_reaped_instances_total{function="tiers"}`); v < 1 {
		t.Fatalf("reaped counter %v; want >= 1", v)
	}
	// The close, and the eviction after it, run off the request path.
	for f.CodeResident() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.CodeResident() {
		t.Fatal("code of a function without instances still resident over a 1-byte budget")
	}
	disk := max(metricValue(t, `wisp_pool_starts_total{function="tiers",tier="disk"}`), 0)
	if r, err := invoke(f, request("GET", "/")); err != nil || r.status != 200 {
		t.Fatalf("request after eviction: %+v %v", r, err)
	}
	// (The first request may have been a disk start too: the tiny budget can evict the code
	// as soon as the deploy's trial instance is gone.)
	if v := metricValue(t, `wisp_pool_starts_total{function="tiers",tier="disk"}`); v != disk+1 {
		t.Fatalf("disk starts went from %v to %v; want one more", disk, v)
	}
}
