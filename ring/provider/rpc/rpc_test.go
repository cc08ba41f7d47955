package rpc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/vectors"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// funcs is an Invoker over Go functions. The pool does not implement Invoker yet; the end-to-end
// test with wasm guests is in package ring's tests.
type funcs struct {
	host *ring.Host
	m    map[string]func(ctx context.Context, caller string, req *abi.Request) (*abi.Response, error)
}

func (f *funcs) Invoke(ctx context.Context, caller, name string, req *abi.Request, fn func(*abi.Response) error) error {
	h, ok := f.m[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	resp, err := h(ctx, caller, req)
	if err != nil {
		return err
	}
	return fn(resp)
}

func request(fn, method, uri, body string, headers ...string) []byte {
	b := wire.AppendStr(nil, fn)
	b = wire.AppendStr(b, method)
	b = wire.AppendStr(b, uri)
	b = wire.AppendU32(b, uint32(len(headers)/2))
	for _, h := range headers {
		b = wire.AppendStr(b, h)
	}
	return wire.AppendStr(b, body)
}

type response struct {
	code    ring.Code
	status  int
	headers map[string]string
	body    string
	message string
}

// call submits payload from in and returns its completion.
func call(t testing.TB, in *ring.Instance, payload []byte) response {
	t.Helper()
	if r := in.Submit(1, ring.ProviderRPC, payload); r < 0 {
		t.Fatalf("Submit = %v", ring.Code(-r))
	}
	id, size, r := in.Wait()
	if r < 0 {
		return response{code: ring.Code(-r)}
	}
	buf := make([]byte, size)
	in.Read(id, ring.ProviderRPC, buf)
	d := wire.NewDecoder(buf)
	out := response{code: ring.Code(d.U32("code"))}
	if out.code != ring.CodeOK {
		out.message = d.Str("message")
		return out
	}
	out.status = int(d.U32("status"))
	out.headers = map[string]string{}
	for range d.Count("headers", 8) {
		k := d.Str("name")
		out.headers[k] = d.Str("value")
	}
	out.body = d.Str("body")
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newSetup(t testing.TB, cfg Config) (*funcs, func(name string) *ring.Instance) {
	t.Helper()
	f := &funcs{m: map[string]func(context.Context, string, *abi.Request) (*abi.Response, error){}}
	cfg.Invoker = f
	h, err := ring.New(ring.Config{Providers: []ring.Provider{New(cfg)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	f.host = h
	return f, func(name string) *ring.Instance {
		fn, err := h.NewFunction(ring.FunctionConfig{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return fn.NewInstance()
	}
}

func TestCall(t *testing.T) {
	f, instance := newSetup(t, Config{MaxResponseBody: 100})
	f.m["echo"] = func(_ context.Context, caller string, req *abi.Request) (*abi.Response, error) {
		hs := []abi.Header{{Name: []byte("X-Caller"), Value: []byte(caller)}}
		for _, h := range req.Headers {
			hs = append(hs, abi.Header{Name: append([]byte("Got-"), h.Name...), Value: h.Value})
		}
		return &abi.Response{Status: 202, Headers: hs, Body: fmt.Appendf(nil, "%s %s %s host=%s", req.Method, req.URI, req.Body, req.Host)}, nil
	}
	f.m["big"] = func(context.Context, string, *abi.Request) (*abi.Response, error) {
		return &abi.Response{Status: 200, Body: make([]byte, 101)}, nil
	}
	f.m["broken"] = func(context.Context, string, *abi.Request) (*abi.Response, error) {
		return nil, fmt.Errorf("function %q failed (trap), error id 0123", "broken")
	}
	in := instance("caller")
	in.Begin(context.Background())
	defer in.End()
	r := call(t, in, request("echo", "POST", "/x?y=1", "hi", "A", "1", "wisp-caller", "spoofed"))
	if r.code != ring.CodeOK || r.status != 202 || r.body != "POST /x?y=1 hi host=echo" || r.headers["X-Caller"] != "caller" ||
		r.headers["Got-A"] != "1" || r.headers["Got-"+CallerHeader] != "caller" {
		t.Errorf("echo: %+v", r)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    ring.Code
		msg     string
	}{
		{"default method and uri", request("echo", "", "", ""), ring.CodeOK, ""},
		{"no such function", request("nope", "GET", "/", ""), ring.CodeNotFound, `no such function: "nope"`},
		{"callee failed", request("broken", "GET", "/", ""), ring.CodeUnavailable, "error id 0123"},
		{"response too large", request("big", "GET", "/", ""), ring.CodeTooLarge, "over the limit of 100"},
		{"uri without slash", request("echo", "GET", "x", ""), ring.CodeInvalid, "does not start"},
		{"no function", request("", "GET", "/", ""), ring.CodeInvalid, "no function"},
		{"malformed", []byte{1}, ring.CodeInvalid, "cannot decode"},
	} {
		r := call(t, in, tc.payload)
		if r.code != tc.want || !strings.Contains(r.message, tc.msg) {
			t.Errorf("%s: %v %q; want %v %q", tc.name, r.code, r.message, tc.want, tc.msg)
		}
	}
	if r := call(t, in, request("echo", "", "", "")); r.body != "GET /  host=echo" {
		t.Errorf("defaults: body %q", r.body)
	}
}

// TestDepthLimit runs a function that calls itself through the ring: each level is a new
// instance whose request context is the one the Invoker received. The chain stops at the limit,
// and the error travels back up.
func TestDepthLimit(t *testing.T) {
	f, instance := newSetup(t, Config{MaxDepth: 4})
	f.m["loop"] = func(ctx context.Context, _ string, req *abi.Request) (*abi.Response, error) {
		in := instance("loop")
		in.Begin(ctx)
		defer in.End()
		r := call(t, in, request("loop", "GET", "/", ""))
		if r.code != ring.CodeOK {
			return &abi.Response{Status: 508, Body: []byte(strconv.Itoa(Depth(ctx)) + " " + r.code.String())}, nil
		}
		return &abi.Response{Status: r.status, Body: []byte(r.body)}, nil
	}
	in := instance("loop")
	in.Begin(context.Background())
	defer in.End()
	r := call(t, in, request("loop", "GET", "/", ""))
	if r.code != ring.CodeOK || r.status != 508 || r.body != "4 depth" {
		t.Errorf("got %v %d %q; want the fourth level refused with depth", r.code, r.status, r.body)
	}
}

func TestCallEndsWithCaller(t *testing.T) {
	f, instance := newSetup(t, Config{})
	f.m["slow"] = func(ctx context.Context, _ string, _ *abi.Request) (*abi.Response, error) {
		select {
		case <-time.After(10 * time.Second):
			return &abi.Response{Status: 200}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	in := instance("caller")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	in.Begin(ctx)
	defer in.End()
	if r := call(t, in, request("slow", "GET", "/", "")); r.code != ring.CodeCanceled && r.code != ring.CodeTimeout {
		t.Errorf("got %v; want the wait canceled or the call timed out", r.code)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(request("echo", "GET", "/a", "b", "k", "v"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		if r.Function == "" || len(r.URI) == 0 || r.URI[0] != '/' {
			t.Fatalf("Decode accepted %+v", r)
		}
	})
}

func TestSDKVectors(t *testing.T) {
	vs := vectors.Load(t, ring.ProviderRPC)
	got, err := Decode(vs["rpc post with header"])
	if err != nil || got.Function != "users" || string(got.Method) != "POST" || string(got.URI) != "/users/42?full=1" ||
		len(got.Headers) != 1 || string(got.Headers[0].Name) != "Accept" || string(got.Headers[0].Value) != "application/json" ||
		string(got.Body) != "x" {
		t.Errorf("decoded %+v, %v", got, err)
	}
}
