package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/wispfn/wisp/gateway"
	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/pool"
	"github.com/wispfn/wisp/sdk/build/buildtest"
)

const token = "test-token"

// testServer is a whole Wisp node in-process: embedded NATS, registry, runtime and a Hertz
// gateway on 127.0.0.1:0. Its log is printed only when the test fails.
type testServer struct {
	t    testing.TB
	url  string
	gw   *gateway.Server
	node *natsnode.Node
	rt   *pool.Runtime
	logs *logBuffer

	ownNode bool // stop closes node
}

// logBuffer collects the server's log; the server writes while tests read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startServer(t testing.TB, dataDir string, maxModule int, opts ...func(*gateway.Config)) *testServer {
	t.Helper()
	node, err := natsnode.Start(context.Background(), natsnode.Options{Dir: dataDir + "/jetstream"})
	if err != nil {
		t.Fatal(err)
	}
	s := startServerOn(t, node, maxModule, opts...)
	s.ownNode = true
	return s
}

// startServerOn starts a gateway on node, which may be shared with other gateways: nodes of
// one deployment.
// opts change the gateway's configuration; they can read the listener's address.
func startServerOn(t testing.TB, node *natsnode.Node, maxModule int, opts ...func(*gateway.Config)) *testServer {
	t.Helper()
	ctx := context.Background()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	reg, err := registry.Open(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := pool.New(ctx, pool.Config{CacheDir: buildtest.CacheDir(t), SnapshotDir: buildtest.SnapshotDir(t), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{Listener: ln, Token: token, Registry: reg, Runtime: rt, Logger: log, MaxModuleBytes: maxModule}
	for _, o := range opts {
		o(&cfg)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Load(ctx); err != nil {
		t.Fatal(err)
	}
	gw.Start()
	s := &testServer{t: t, url: gw.URL(), gw: gw, node: node, rt: rt, logs: logs}
	s.waitReady()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return s
}

func (s *testServer) waitReady() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.url + "/_wisp/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("server at %s not ready", s.url)
}

func (s *testServer) stop() {
	if s.gw == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.gw.Shutdown(ctx)
	_ = s.rt.Close(ctx)
	if s.ownNode {
		_ = s.node.Close()
	}
	s.gw = nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d %q is not JSON: %v", r.status, r.body, err)
	}
	return m
}

func (s *testServer) do(method, path string, body []byte, hdr map[string]string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	tr := &http.Transport{DisableCompression: true}
	// A deploy of new code pre-initializes it (interpreted) and compiles the result; under the
	// race detector wazero runs ~15× slower, past half a minute for a 3.5 MB Go module on a
	// busy 2-core machine.
	resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

var auth = map[string]string{"Authorization": "Bearer " + token}

func (s *testServer) deploy(name string, wasm []byte, query string) response {
	s.t.Helper()
	p := "/_wisp/functions/" + name
	if query != "" {
		p += "?" + query
	}
	return s.do("PUT", p, wasm, auth)
}

func (s *testServer) mustDeploy(name, example, query string) {
	s.t.Helper()
	if r := s.deploy(name, buildtest.Wasm(s.t, example), query); r.status != http.StatusCreated {
		s.t.Fatalf("deploy %s: %d %s", name, r.status, r.body)
	}
}

func TestHelloEndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	wasm := buildtest.Wasm(t, "hello")
	enc, _ := zstd.NewWriter(nil)
	r := s.do("PUT", "/_wisp/functions/hello", enc.EncodeAll(wasm, nil), map[string]string{"Authorization": "Bearer " + token, "Content-Encoding": "zstd"})
	if r.status != http.StatusCreated {
		t.Fatalf("deploy: %d %s", r.status, r.body)
	}
	if m := r.json(t); m["version"] != 1.0 || !strings.HasSuffix(m["url"].(string), "/hello/") {
		t.Errorf("deploy answered %v; want version 1 and the URL", m)
	}
	for _, p := range []string{"/hello", "/hello/", "/hello/any/path?x=1"} {
		r := s.do("GET", p, nil, nil)
		if r.status != 200 || string(r.body) != "Hello WASM from Golang!" || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("GET %s: %d %q %q", p, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	r = s.do("GET", "/nope/x", nil, nil)
	if r.status != 404 || !strings.Contains(r.json(t)["error"].(string), "/nope/x") {
		t.Errorf("unknown function: %d %s", r.status, r.body)
	}
	metrics := string(s.do("GET", "/metrics", nil, nil).body)
	for _, want := range []string{
		`wisp_requests_total{function="hello",status="200"} 3`,
		`wisp_pool_starts_total{function="hello",tier="hot"}`,
		`wisp_pool_live_instances{function="hello"} 1`,
		`wisp_pool_compile_seconds_bucket{function="hello"`,
		`wisp_request_duration_seconds_bucket{function="hello"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestEchoSeesTheRequest(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	s.mustDeploy("echo", "echo", "env=GREETING%3Dhello+there")
	body := []byte("some body bytes")
	r := s.do("POST", "/echo/a/b%20c?x=1&y=2&env=GREETING", body, map[string]string{"X-Custom": "v1", "Content-Type": "text/plain"})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	m := r.json(t)
	want := map[string]any{
		"method": "POST", "path": "/a/b c", "raw_query": "x=1&y=2&env=GREETING",
		"request_uri": "/echo/a/b%20c?x=1&y=2&env=GREETING", "body_length": float64(len(body)),
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v; want %v (all: %v)", k, m[k], v, m)
		}
	}
	if env := fmt.Sprint(m["env"]); env != "map[GREETING:hello there]" {
		t.Errorf("env = %s; want GREETING from the deploy", env)
	}
	if h, _ := m["headers"].(map[string]any); fmt.Sprint(h["X-Custom"]) != "[v1]" {
		t.Errorf("headers = %v; want X-Custom [v1]", m["headers"])
	}
	if !strings.HasPrefix(fmt.Sprint(m["host"]), "127.0.0.1:") {
		t.Errorf("host = %v", m["host"])
	}
}

func TestBadDeploysLoseNothing(t *testing.T) {
	s := startServer(t, t.TempDir(), 8<<20)
	s.mustDeploy("hello", "hello", "")
	hello := buildtest.Wasm(t, "hello")
	tests := []struct {
		name   string
		fn     string
		body   []byte
		hdr    map[string]string
		query  string
		status int
		msg    string
	}{
		{"no token", "x", hello, map[string]string{}, "", 401, "Authorization"},
		{"wrong token", "x", hello, map[string]string{"Authorization": "Bearer nope"}, "", 401, "does not match"},
		{"invalid name", "Bad_Name", hello, auth, "", 400, "name"},
		{"empty body", "x", nil, auth, "", 400, "empty module"},
		{"not wasm", "x", []byte("#!/bin/sh\necho hi\n"), auth, "", 400, "not a wasm module"},
		{"truncated wasm", "x", hello[:len(hello)/3], auth, "", 422, "invalid module"},
		{"no handle export", "x", []byte("\x00asm\x01\x00\x00\x00"), auth, "", 422, "exports no"},
		{"oversized upload", "x", bytes.Repeat([]byte{0}, 8<<20+10), auth, "", 413, "limit"},
		{"unsupported encoding", "x", hello, map[string]string{"Authorization": "Bearer " + token, "Content-Encoding": "br"}, "", 415, "Content-Encoding"},
		{"corrupt gzip", "x", []byte("not gzip"), map[string]string{"Authorization": "Bearer " + token, "Content-Encoding": "gzip"}, "", 400, "gzip"},
		{"bad limit", "x", hello, auth, "memory_mib=lots", 400, "memory_mib"},
		{"bad env", "x", hello, auth, "env=NOVALUE", 400, "KEY=VALUE"},
		{"bad fetch_allow", "x", hello, auth, "fetch_allow=http%3A%2F%2Fexample.com", 400, "fetch_allow"},
		{"fetch_allow with a bad port", "x", hello, auth, "fetch_allow=example.com%3Ahttp", 400, "bad port"},
		{"fetch_allow in upper case", "x", hello, auth, "fetch_allow=Example.com", 400, "lower case"},
		{"bad kv_namespace", "x", hello, auth, "kv_namespace=Tenant.A", 400, "kv_namespace"},
		{"route taken", "x", hello, auth, "route=/hello", 409, "taken"},
		{"reserved route", "x", hello, auth, "route=/_wisp/x", 400, "reserved"},
		{"reserved name", "metrics", hello, auth, "", 400, "reserved"},
		{"memory limit below module minimum", "x", hello, auth, "memory_mib=1", 422, "memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := "/_wisp/functions/" + tt.fn
			if tt.query != "" {
				p += "?" + tt.query
			}
			r := s.do("PUT", p, tt.body, tt.hdr)
			if r.status != tt.status {
				t.Fatalf("status %d (%s); want %d", r.status, r.body, tt.status)
			}
			if msg, _ := r.json(t)["error"].(string); !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q does not mention %q", msg, tt.msg)
			}
		})
	}
	r := s.do("GET", "/hello/", nil, nil)
	if r.status != 200 || string(r.body) != "Hello WASM from Golang!" {
		t.Fatalf("hello after bad deploys: %d %s", r.status, r.body)
	}
	list := s.do("GET", "/_wisp/functions", nil, auth).json(t)["functions"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["version"] != 1.0 {
		t.Fatalf("functions after bad deploys = %v; want only hello v1", list)
	}
}

func TestGuestFaults(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	// The deadline leaves /oom time to exhaust 32 MiB even under the race detector.
	s.mustDeploy("faults", "faults", "timeout_ms=2000&memory_mib=32&max_instances=2")
	s.mustDeploy("hello", "hello", "")
	tests := []struct {
		path   string
		status int
		kind   string
	}{
		{"/panic", 500, "panic"},
		{"/exit", 500, "exit"},
		{"/oom", 500, "oom"},
		{"/loop", 504, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := s.do("GET", "/faults"+tt.path, nil, nil)
			if r.status != tt.status {
				t.Fatalf("status %d (%s); want %d", r.status, r.body, tt.status)
			}
			m := r.json(t)
			id, _ := m["error_id"].(string)
			if id == "" || !strings.Contains(m["error"].(string), tt.kind) {
				t.Fatalf("body %v; want kind %s and an error id", m, tt.kind)
			}
			if !strings.Contains(s.logs.String(), "error_id="+id) {
				t.Errorf("error id %s not in the server log", id)
			}
			ok := s.do("GET", "/faults/ok", nil, nil)
			if ok.status != 200 {
				t.Fatalf("faults /ok after %s: %d %s", tt.path, ok.status, ok.body)
			}
			if h := s.do("GET", "/hello/", nil, nil); h.status != 200 {
				t.Fatalf("hello after a fault in another function: %d", h.status)
			}
		})
	}
}

func TestBodyLimits(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	s.mustDeploy("echo", "echo", "max_request_bytes=1024&max_response_bytes=4096")
	if r := s.do("POST", "/echo/", bytes.Repeat([]byte("a"), 1024), nil); r.status != 200 {
		t.Errorf("1024-byte body: %d %s", r.status, r.body)
	}
	if r := s.do("POST", "/echo/", bytes.Repeat([]byte("a"), 1025), nil); r.status != 413 {
		t.Errorf("1025-byte body: %d %s; want 413", r.status, r.body)
	}
	if r := s.do("GET", "/echo/big?n=3000", nil, nil); r.status != 200 || len(r.body) != 3000 {
		t.Errorf("3000-byte response: %d, %d bytes", r.status, len(r.body))
	}
	r := s.do("GET", "/echo/big?n=5000", nil, nil)
	if r.status != 500 || r.json(t)["error_id"] == nil {
		t.Errorf("5000-byte response over a 4096 limit: %d %s; want 500 with an error id", r.status, r.body)
	}
}

func TestCompression(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	s.mustDeploy("echo", "echo", "")
	tests := []struct {
		accept, path, want string
		n                  int
	}{
		{"gzip", "/echo/big?n=20000", "gzip", 20000},
		{"gzip, deflate, br, zstd", "/echo/big?n=20000", "zstd", 20000},
		{"gzip, zstd", "/echo/big?n=100", "", 100},
		{"", "/echo/big?n=20000", "", 20000},
		{"zstd;q=0, gzip;q=0", "/echo/big?n=20000", "", 20000},
	}
	for _, tt := range tests {
		t.Run(tt.accept+tt.path, func(t *testing.T) {
			r := s.do("GET", tt.path, nil, map[string]string{"Accept-Encoding": tt.accept})
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := r.header.Get("Content-Encoding"); got != tt.want {
				t.Fatalf("Content-Encoding %q; want %q", got, tt.want)
			}
			body := r.body
			switch tt.want {
			case "gzip":
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				body, err = io.ReadAll(zr)
				if err != nil {
					t.Fatal(err)
				}
			case "zstd":
				dec, _ := zstd.NewReader(nil)
				var err error
				body, err = dec.DecodeAll(body, nil)
				if err != nil {
					t.Fatal(err)
				}
			}
			if len(body) != tt.n {
				t.Fatalf("decoded body %d bytes; want %d", len(body), tt.n)
			}
			if tt.want != "" && len(r.body) >= tt.n/4 {
				t.Errorf("compressed %d → %d bytes; want a real reduction", tt.n, len(r.body))
			}
		})
	}
}

func TestHostRoutingAdminInvokeAndRemove(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	s.mustDeploy("site", "echo", "host=example.test&route=/site-path")
	r := s.do("GET", "/any/where", nil, map[string]string{"Host": "example.test"})
	if r.status != 200 || r.json(t)["path"] != "/any/where" {
		t.Fatalf("host routing: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/site-path/x", nil, nil); r.status != 200 || r.json(t)["path"] != "/x" {
		t.Fatalf("custom route: %d %s", r.status, r.body)
	}
	if r := s.do("POST", "/_wisp/invoke/site/p/q", []byte("abc"), auth); r.status != 200 || r.json(t)["path"] != "/p/q" {
		t.Fatalf("admin invoke: %d %s", r.status, r.body)
	}
	if r := s.do("POST", "/_wisp/invoke/site/p", nil, nil); r.status != 401 {
		t.Fatalf("admin invoke without token: %d", r.status)
	}
	if r := s.do("DELETE", "/_wisp/functions/site", nil, auth); r.status != 200 {
		t.Fatalf("rm: %d %s", r.status, r.body)
	}
	if r := s.do("DELETE", "/_wisp/functions/site", nil, auth); r.status != 404 {
		t.Fatalf("second rm: %d %s; want 404", r.status, r.body)
	}
	if r := s.do("GET", "/site-path/x", nil, nil); r.status != 404 {
		t.Fatalf("after rm: %d; want 404", r.status)
	}
	if r := s.do("GET", "/_wisp/functions/site", nil, auth); r.status != 404 {
		t.Fatalf("get after rm: %d; want 404", r.status)
	}
}

func TestRedeployAndRestartKeepFunctions(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, 0)
	s.mustDeploy("hello", "hello", "")
	s.mustDeploy("hello", "hello", "env=V%3D2")
	s.mustDeploy("echo", "echo", "route=/e")
	s.stop()

	s2 := startServer(t, dir, 0)
	if r := s2.do("GET", "/hello/", nil, nil); r.status != 200 || string(r.body) != "Hello WASM from Golang!" {
		t.Fatalf("hello after restart: %d %s", r.status, r.body)
	}
	if r := s2.do("GET", "/e/x", nil, nil); r.status != 200 {
		t.Fatalf("echo on its route after restart: %d %s", r.status, r.body)
	}
	m := s2.do("GET", "/_wisp/functions/hello", nil, auth).json(t)
	if m["version"] != 2.0 {
		t.Fatalf("hello after restart = %v; want version 2", m)
	}
}

func TestRollback(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	s.mustDeploy("app", "hello", "")
	s.mustDeploy("app", "echo", "")
	if r := s.do("GET", "/app/x", nil, nil); r.json(t)["path"] != "/x" {
		t.Fatalf("version 2 is not echo: %s", r.body)
	}
	r := s.do("POST", "/_wisp/functions/app/rollback", nil, auth)
	if r.status != 200 || r.json(t)["version"] != 3.0 {
		t.Fatalf("rollback: %d %s; want version 3", r.status, r.body)
	}
	if r := s.do("GET", "/app/", nil, nil); string(r.body) != "Hello WASM from Golang!" {
		t.Fatalf("after rollback: %s; want hello", r.body)
	}
	if r := s.do("POST", "/_wisp/functions/app/rollback?version=2", nil, auth); r.status != 200 {
		t.Fatalf("rollback to 2: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/app/y", nil, nil); r.json(t)["path"] != "/y" {
		t.Fatalf("after rollback to 2: %s; want echo", r.body)
	}
	vs := s.do("GET", "/_wisp/functions/app/versions", nil, auth).json(t)["versions"].([]any)
	if len(vs) != 4 {
		t.Fatalf("%d versions; want 4", len(vs))
	}
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/_wisp/functions/app/rollback?version=x", 400},
		{"/_wisp/functions/app/rollback?version=99", 404},
		{"/_wisp/functions/nope/rollback", 404},
	} {
		if r := s.do("POST", tt.path, nil, auth); r.status != tt.status {
			t.Errorf("POST %s: %d %s; want %d", tt.path, r.status, r.body, tt.status)
		}
	}
}
