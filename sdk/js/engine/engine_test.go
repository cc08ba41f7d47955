package engine

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/dop251/goja"

	"github.com/wispfn/wisp/sdk/go/faas/http"
)

// These tests run the engine natively, with goja as the wasm guest runs it; the module built
// from it is tested by sdk/build and, end to end, by cmd/wisp.

type engine struct {
	*Engine
	stdout, stderr *bytes.Buffer
}

func newEngine(t *testing.T, script string) engine {
	t.Helper()
	e := engine{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	var err error
	e.Engine, err = New(script, Options{Stdout: e.stdout, Stderr: e.stderr, Env: map[string]string{"GREETING": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// request builds the Go SDK request the host would hand the handler; headers alternate names
// and values.
func request(t testing.TB, method, uri, body string, headers ...string) *http.Request {
	t.Helper()
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Add(headers[i], headers[i+1])
	}
	return &http.Request{Method: method, URL: u, RequestURI: "/fn" + uri, Header: h, Host: "fn.example.com",
		RemoteAddr: "192.0.2.1:1234", ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (e engine) do(t *testing.T, req *http.Request) (reply, error) {
	t.Helper()
	resp, err := e.serve(req)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, header: resp.Header}
	if resp.Body != nil {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r.body = string(b)
	}
	return r, nil
}

func (e engine) mustDo(t *testing.T, req *http.Request) reply {
	t.Helper()
	r, err := e.do(t, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return r
}

// eval runs the body of an async function in e's runtime and returns its result as a string.
func (e engine) eval(t *testing.T, body string) (string, error) {
	t.Helper()
	v, err := e.vm.RunString("(async () => {\n" + body + "\n})()")
	if err != nil {
		return "", err
	}
	v, err = e.settle(v)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

// settle waits for v, if it is a promise, and returns its value.
func (e engine) settle(v goja.Value) (goja.Value, error) {
	p, ok := v.Export().(*goja.Promise)
	if !ok {
		return v, nil
	}
	if err := e.wait(p); err != nil {
		return nil, err
	}
	return p.Result(), nil
}

const hello = `run(async (request) => {
  const url = new URL(request.url);
  return new Response(` + "`Hello WASM from JavaScript! ${request.method} ${url.pathname}`" + `, {
    status: 200,
    headers: { "content-type": "text/plain" },
  });
});`

func TestHello(t *testing.T) {
	e := newEngine(t, hello)
	for _, tc := range []struct{ method, uri, want string }{
		{"GET", "/", "Hello WASM from JavaScript! GET /"},
		{"POST", "/a/b?x=1", "Hello WASM from JavaScript! POST /a/b"},
		{"GET", "/%C3%A9t%C3%A9", "Hello WASM from JavaScript! GET /%C3%A9t%C3%A9"},
	} {
		r := e.mustDo(t, request(t, tc.method, tc.uri, ""))
		if r.status != 200 || r.header.Get("Content-Type") != "text/plain" || r.body != tc.want {
			t.Errorf("%s %s: got %d %v %q; want 200 text/plain %q", tc.method, tc.uri, r.status, r.header, r.body, tc.want)
		}
	}
}

func TestServiceWorkerForm(t *testing.T) {
	e := newEngine(t, `
async function handle(request, n) {
  return new Response("sw " + n + " " + request.method, { status: 201, headers: [["X-A", "1"], ["x-a", "2"]] });
}
addEventListener("fetch", (event) => {
  if (new URL(event.request.url).pathname === "/skip") return;
  event.respondWith(handle(event.request, 1));
});
addEventListener("fetch", (event) => event.respondWith(handle(event.request, 2)));
`)
	r := e.mustDo(t, request(t, "PUT", "/", ""))
	if r.status != 201 || r.body != "sw 1 PUT" || strings.Join(r.header.Values("X-A"), ",") != "1,2" {
		t.Errorf("got %d %v %q; want 201, X-A 1 and 2, %q", r.status, r.header, r.body, "sw 1 PUT")
	}
	if r := e.mustDo(t, request(t, "GET", "/skip", "")); r.body != "sw 2 GET" {
		t.Errorf("second listener: got %q", r.body)
	}
}

func TestRequestFromHost(t *testing.T) {
	e := newEngine(t, `run(async (request, env, ctx) => {
  const url = new URL(request.url);
  const body = request.method === "GET" ? null : await request.json();
  return Response.json({
    method: request.method,
    url: request.url,
    host: request.headers.get("Host"),
    multi: request.headers.get("x-multi"),
    type: request.headers.get("content-type"),
    q: url.searchParams.get("q"),
    all: url.searchParams.getAll("n"),
    body,
    env: env.GREETING,
    hasBody: request.body !== null,
    waitUntil: typeof ctx.waitUntil,
  }, { status: 202, headers: { "x-done": "yes" } });
});`)
	r := e.mustDo(t, request(t, "POST", "/p/a?q=a+b%21&n=1&n=2", `{"x":[1,2],"y":"é"}`,
		"Content-Type", "application/json", "X-Multi", "1", "x-multi", "2"))
	if r.status != 202 || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Done") != "yes" {
		t.Fatalf("got %d %v %s", r.status, r.header, r.body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"method": "POST", "url": "http://fn.example.com/p/a?q=a+b%21&n=1&n=2", "host": "fn.example.com",
		"multi": "1, 2", "type": "application/json", "q": "a b!", "all": []any{"1", "2"},
		"body": map[string]any{"x": []any{1.0, 2.0}, "y": "é"}, "env": "hi", "hasBody": true,
		"waitUntil": "function",
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("got  %s\nwant %s", g, w)
	}
	r = e.mustDo(t, request(t, "GET", "/", "", "X-Forwarded-Proto", "https"))
	if !strings.Contains(r.body, `"url":"https://fn.example.com/"`) || !strings.Contains(r.body, `"hasBody":false`) {
		t.Errorf("GET behind https: %s", r.body)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBodies(t *testing.T) {
	e := newEngine(t, `run(async (request) => {
  const kind = new URL(request.url).searchParams.get("kind");
  switch (kind) {
    case "bytes": return new Response(new Uint8Array([104, 105, 0, 255]));
    case "view": return new Response(new Uint8Array([0, 1, 2, 3, 4]).subarray(1, 3));
    case "buffer": return new Response(new TextEncoder().encode("ü").buffer);
    case "null": return new Response(null, { status: 204 });
    case "echo": return new Response(request.body, { headers: { "content-type": request.headers.get("content-type") } });
    case "bin": { const b = new Uint8Array(await request.arrayBuffer()); return new Response(String(b.length) + ":" + b[0] + ":" + b[b.length - 1]); }
    case "form": return new Response(new URLSearchParams({ a: "1 2", b: "é&" }));
    case "text": return new Response(await request.text());
    case "twice": await request.text(); return new Response(await request.text());
  }
});`)
	binary := "\x00\x01\xfe\xff"
	for _, tc := range []struct {
		kind, body, wantBody, wantType string
		status                         int
	}{
		{"bytes", "", "hi\x00\xff", "", 200},
		{"view", "", "\x01\x02", "", 200},
		{"buffer", "", "ü", "", 200},
		{"null", "", "", "", 204},
		{"echo", "some text", "some text", "text/x-thing", 200},
		{"bin", binary, "4:0:255", "text/plain;charset=UTF-8", 200},
		{"form", "", "a=1+2&b=%C3%A9%26", "application/x-www-form-urlencoded;charset=UTF-8", 200},
		{"text", "naïve ✓", "naïve ✓", "text/plain;charset=UTF-8", 200},
	} {
		r := e.mustDo(t, request(t, "POST", "/?kind="+tc.kind, tc.body, "Content-Type", "text/x-thing"))
		if r.status != tc.status || r.body != tc.wantBody || r.header.Get("Content-Type") != tc.wantType {
			t.Errorf("%s: got %d %q %q; want %d %q %q", tc.kind, r.status, r.header.Get("Content-Type"), r.body,
				tc.status, tc.wantType, tc.wantBody)
		}
	}
	_, err := e.do(t, request(t, "POST", "/?kind=twice", "x"))
	if err == nil || !strings.Contains(err.Error(), "Body has already been used") {
		t.Errorf("reading a body twice: %v", err)
	}
}

// TestFailures: what the handler does wrong becomes an error naming it (Handle turns it into the
// guest failure that the host answers with a 500 and an error id).
func TestFailures(t *testing.T) {
	e := newEngine(t, `run(async (request) => {
  switch (new URL(request.url).pathname) {
    case "/throw": throw new Error("boom");
    case "/reject": return Promise.reject(new TypeError("nope"));
    case "/string": return "just a string";
    case "/undefined": return;
    case "/pending": return new Promise(() => {});
    case "/status": return new Response("x", { status: 1000 });
    case "/used": { const r = new Response("x"); await r.text(); return r; }
    case "/reject-value": throw 42;
  }
  return new Response("fine");
});`)
	sync := newEngine(t, `run((request) => { throw new RangeError("sync " + request.method); })`)
	for _, tc := range []struct {
		name string
		e    engine
		path string
		want []string
	}{
		{"throw", e, "/throw", []string{"Uncaught (in promise) Error: boom", "index.js:3:"}},
		{"sync throw", sync, "/", []string{"Uncaught RangeError: sync GET", "index.js:1:"}},
		{"reject", e, "/reject", []string{"Uncaught (in promise) TypeError: nope", "index.js:4:"}},
		{"not a Response", e, "/string", []string{"index.js: the handler returned a string, not a Response"}},
		{"nothing", e, "/undefined", []string{"returned undefined, not a Response (does the handler return its Response?)"}},
		{"never settles", e, "/pending", []string{"promise never settled"}},
		{"bad status", e, "/status", []string{"RangeError", "status 1000"}},
		{"body used", e, "/used", []string{"body was read already"}},
		{"thrown value", e, "/reject-value", []string{"Uncaught (in promise) 42"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.e.do(t, request(t, "GET", tc.path, ""))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// The runtime is still usable after a failure (the host discards the instance anyway).
	if r := e.mustDo(t, request(t, "GET", "/", "")); r.body != "fine" {
		t.Errorf("after failures: %q", r.body)
	}
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "Error: boom") {
			t.Errorf("Handle recovered %v; want a panic with the error", v)
		}
	}()
	e.Handle(request(t, "GET", "/throw", ""))
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         []string
	}{
		{"syntax error", "run(async (r) => {\n  return new Response('x'\n});\n", []string{"cannot compile index.js", "SyntaxError", "Line 3:1"}},
		{"throws", "const x = {};\nx.y.z = 1;\n", []string{"index.js threw while it was evaluated", "TypeError", "index.js:2:"}},
		{"no handler", "console.log('hi')", []string{"registered no handler", "run(handler)", `addEventListener("fetch"`}},
		{"handler not a function", "run({})", []string{"handler must be a function"}},
		{"run twice", "run(() => {}); run(() => {});", []string{"run(handler) was called twice"}},
		{"mixed", "run(() => {}); addEventListener('fetch', () => {});", []string{"cannot be mixed"}},
		{"other event", "addEventListener('scheduled', () => {});", []string{`"fetch" events only`}},
		{"module syntax", "export default { fetch() {} }", []string{"SyntaxError"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.script, Options{Stdout: io.Discard, Stderr: io.Discard})
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestTimers(t *testing.T) {
	e := newEngine(t, `
let early = 0;
setTimeout(() => early++, 0); // set while the script runs: dropped, never fired
run(async () => {
  const order = [];
  queueMicrotask(() => order.push("micro"));
  const t = setTimeout(() => order.push("cleared"), 1);
  clearTimeout(t);
  let ticks = 0;
  await new Promise((resolve) => {
    const i = setInterval(() => { if (++ticks === 3) { clearInterval(i); resolve(); } }, 1);
  });
  await new Promise((resolve) => setTimeout(resolve, 2, "x"));
  setTimeout(() => order.push("late"), 60000); // pending when the response is ready: dropped
  order.push("ticks " + ticks, "early " + early);
  return new Response(order.join(","));
});`)
	for range 2 {
		if r := e.mustDo(t, request(t, "GET", "/", "")); r.body != "micro,ticks 3,early 0" {
			t.Errorf("got %q", r.body)
		}
	}
}

func TestConsole(t *testing.T) {
	e := newEngine(t, `run(() => new Response("ok"))`)
	_, err := e.eval(t, `
console.log("plain", 1, true, null, undefined, "s");
console.info({ a: 1, "b-c": "x", d: [1, { e: 2 }], f: () => 1 });
console.log("%s is %d years and %i%%", "Bob", 42.5, 42.5, "extra");
console.warn(new Map([["k", 1]]), new Set([1]), new Uint8Array([1, 2]));
const c = {}; c.self = c;
console.error(c, new Headers({ "X-A": "1" }), new URL("http://a.b/c?d"));
console.debug([], {}, Symbol("s"), 10n, -0);
console.error(new Error("bad"));
`)
	if err != nil {
		t.Fatal(err)
	}
	wantOut := "plain 1 true null undefined s\n" +
		"{ a: 1, 'b-c': 'x', d: [ 1, { e: 2 } ], f: [Function: f] }\n" +
		"Bob is 42.5 years and 42% extra\n" +
		"[] {} Symbol(s) 10n -0\n"
	if e.stdout.String() != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", e.stdout, wantOut)
	}
	wantErr := regexp.MustCompile(`^Map\(1\) \{ 'k' => 1 \} Set\(1\) \{ 1 \} Uint8Array\(2\) \[ 1, 2 \]
\{ self: \[Circular\] \} Headers \{ 'x-a': '1' \} URL 'http://a.b/c\?d'
Error: bad
\tat .*
`)
	if !wantErr.MatchString(e.stderr.String()) {
		t.Errorf("stderr:\n%s", e.stderr)
	}
}

// TestWebAPI checks the Web API pieces one expression at a time.
func TestWebAPI(t *testing.T) {
	e := newEngine(t, `run(() => new Response("ok"))`)
	for _, tc := range []struct{ name, js, want string }{
		// Headers
		{"headers case-insensitive", `const h = new Headers({ "Content-Type": "a" }); return [h.get("content-type"), h.has("CONTENT-TYPE"), h.get("x")].join("|")`, "a|true|"},
		{"headers append joins", `const h = new Headers(); h.append("X-A", "1"); h.append("x-a", " 2 "); return h.get("X-a")`, "1, 2"},
		{"headers set replaces", `const h = new Headers([["a", "1"], ["a", "2"]]); h.set("A", "3"); return h.get("a")`, "3"},
		{"headers delete", `const h = new Headers({ a: "1", b: "2" }); h.delete("A"); return [...h.keys()].join()`, "b"},
		{"headers sorted entries", `const h = new Headers({ b: "2", a: "1", "Set-Cookie": "x" }); h.append("set-cookie", "y"); return JSON.stringify([...h])`, `[["a","1"],["b","2"],["set-cookie","x"],["set-cookie","y"]]`},
		{"headers forEach", `const out = []; new Headers({ b: "2", a: "1" }).forEach((v, k, h) => out.push(k + "=" + v + (h instanceof Headers))); return out.join()`, "a=1true,b=2true"},
		{"headers getSetCookie", `const h = new Headers(); h.append("Set-Cookie", "a=1"); h.append("Set-Cookie", "b=2"); return JSON.stringify(h.getSetCookie())`, `["a=1","b=2"]`},
		{"headers copy", `const a = new Headers({ x: "1" }); const b = new Headers(a); b.set("x", "2"); return a.get("x") + b.get("x")`, "12"},
		{"headers bad name", `try { new Headers({ "a b": "1" }); } catch (e) { return e.name + ": " + e.message; }`, `TypeError: Invalid header name: "a b"`},
		{"headers bad value", `try { new Headers().set("a", "x\ny"); } catch (e) { return e.name; }`, "TypeError"},
		{"headers bad pair", `try { new Headers([["a"]]); } catch (e) { return e.name; }`, "TypeError"},
		{"headers entries iterator", `const it = new Headers({ a: "1" }).entries(); return JSON.stringify([it.next(), it.next()])`, `[{"value":["a","1"],"done":false},{"done":true}]`},
		// URL
		{"url parts", `const u = new URL("HTTPS://User:Pw@Example.COM:8443/a/./b/../c?x=1&y=%20#frag"); return [u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash, u.origin].join("|")`, "https:|User|Pw|example.com:8443|example.com|8443|/a/c|?x=1&y=%20|#frag|https://example.com:8443"},
		{"url href", `return new URL("http://example.com:80").href`, "http://example.com/"},
		{"url relative", `return new URL("../d?q#h", "http://a.b/x/y/z").href`, "http://a.b/x/d?q#h"},
		{"url absolute path base", `return new URL("/p", new URL("https://a.b/x")).href`, "https://a.b/p"},
		{"url invalid", `try { new URL("/relative"); } catch (e) { return e.name + ": " + e.message; }`, `TypeError: Invalid URL "/relative": it is relative and no base URL was given`},
		{"url no host", `try { new URL("http://"); } catch (e) { return e.name; }`, "TypeError"},
		{"url canParse", `return [URL.canParse("http://x"), URL.canParse("nope"), URL.canParse("y", "http://x/")].join()`, "true,false,true"},
		{"url searchParams", `const u = new URL("http://a/?a=1&b=x+y&a=2"); return [u.searchParams.get("a"), u.searchParams.get("b"), u.searchParams.getAll("a").length, u.searchParams.get("z")].join("|")`, "1|x y|2|"},
		{"url searchParams live", `const u = new URL("http://a/p?a=1"); u.searchParams.append("b", "é f"); u.searchParams.delete("a"); return u.href`, "http://a/p?b=%C3%A9+f"},
		{"url search setter", `const u = new URL("http://a/p?a=1"); const p = u.searchParams; u.search = "?z=9"; return p.get("z") + u.href`, "9http://a/p?z=9"},
		{"url setters", `const u = new URL("http://a.b/p"); u.pathname = "q r"; u.hash = "h"; u.port = "8080"; u.hostname = "C.D"; u.protocol = "https"; return u.href`, "https://c.d:8080/q%20r#h"},
		{"url host setter", `const u = new URL("http://a.b/p"); u.host = "x.y:81"; return u.host`, "x.y:81"},
		{"url ipv6", `const u = new URL("http://[::1]:8080/"); return u.hostname + " " + u.host`, "[::1] [::1]:8080"},
		{"url opaque", `const u = new URL("mailto:a@b.c"); return u.protocol + " " + u.pathname + " " + u.origin`, "mailto: a@b.c null"},
		{"url toJSON", `return JSON.stringify({ u: new URL("http://a/b") })`, `{"u":"http://a/b"}`},
		{"url query escaping", `return new URL("http://a/?q=a b\"c").search`, "?q=a%20b%22c"},
		{"url unicode path", `return new URL("http://a/ä").pathname`, "/%C3%A4"},
		// URLSearchParams
		{"params from string", `const p = new URLSearchParams("?a=1&b=%zz&c=%E2%9C%93&d"); return [p.get("a"), p.get("b"), p.get("c"), p.get("d"), p.size].join("|")`, "1|%zz|✓||4"},
		{"params from object and pairs", `return new URLSearchParams({ a: 1, b: "x" }) + "&" + new URLSearchParams([["c", "3"]])`, "a=1&b=x&c=3"},
		{"params encoding", `return new URLSearchParams({ q: "a b*-._~!'()&=" }).toString()`, "q=a+b*-._%7E%21%27%28%29%26%3D"},
		{"params set", `const p = new URLSearchParams("a=1&b=2&a=3"); p.set("a", "9"); return p.toString()`, "a=9&b=2"},
		{"params has and delete value", `const p = new URLSearchParams("a=1&a=2"); p.delete("a", "1"); return [p.has("a", "1"), p.has("a", "2"), p.toString()].join()`, "false,true,a=2"},
		{"params sort", `const p = new URLSearchParams("b=1&a=2&b=0&a=1"); p.sort(); return p.toString()`, "a=2&a=1&b=1&b=0"},
		{"params iterate", `return JSON.stringify([...new URLSearchParams("x=1&y=2")])`, `[["x","1"],["y","2"]]`},
		// Encoding
		{"text encoder", `return Array.from(new TextEncoder().encode("aé😀")).join()`, "97,195,169,240,159,152,128"},
		{"text round trip", `return new TextDecoder().decode(new TextEncoder().encode("naïve 😀 ✓"))`, "naïve 😀 ✓"},
		{"text decoder bom", `const b = new Uint8Array([0xef, 0xbb, 0xbf, 0x61]); return new TextDecoder().decode(b).length + "," + new TextDecoder("utf-8", { ignoreBOM: true }).decode(b).length`, "1,2"},
		{"text decoder view", `const b = new Uint8Array([0x61, 0x62, 0x63, 0x64]); return new TextDecoder().decode(new DataView(b.buffer, 1, 2))`, "bc"},
		{"text decoder invalid", `return new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62]))`, "a\ufffdb"},
		{"text decoder fatal", `try { new TextDecoder("utf8", { fatal: true }).decode(new Uint8Array([0xff])); } catch (e) { return e.name; }`, "TypeError"},
		{"text decoder label", `try { new TextDecoder("latin1"); } catch (e) { return e.name; }`, "RangeError"},
		{"encodeInto", `const d = new Uint8Array(4); return JSON.stringify(new TextEncoder().encodeInto("aéé", d))`, `{"read":2,"written":3}`},
		{"btoa atob", `return btoa("hi\xff") + " " + atob("aGn/") .length + " " + atob(" aGk ")`, "aGn/ 3 hi"},
		{"btoa unicode", `try { btoa("✓"); } catch (e) { return e.name; }`, "InvalidCharacterError"},
		{"atob invalid", `try { atob("a"); } catch (e) { return e.name; }`, "InvalidCharacterError"},
		// Response
		{"response defaults", `const r = new Response(); return [r.status, r.ok, r.statusText, r.body, r.bodyUsed, r.type, r.redirected].join("|")`, "200|true|||false|default|false"},
		{"response init", `const r = new Response("x", { status: 404, statusText: "Nope", headers: { a: "1" } }); return [r.status, r.ok, r.statusText, r.headers.get("a"), r.headers.get("content-type")].join("|")`, "404|false|Nope|1|text/plain;charset=UTF-8"},
		{"response text", `return await new Response("héllo").text()`, "héllo"},
		{"response bytes text", `return await new Response(new Uint8Array([104, 195, 169])).text()`, "hé"},
		{"response json", `const r = Response.json({ a: [1] }); return r.headers.get("content-type") + " " + JSON.stringify(await r.json())`, `application/json {"a":[1]}`},
		{"response json init", `const r = Response.json(1, { status: 201, headers: { "content-type": "application/x" } }); return r.status + " " + r.headers.get("content-type")`, "201 application/x"},
		{"response json undefined", `try { Response.json(undefined); } catch (e) { return e.name; }`, "TypeError"},
		{"response arrayBuffer", `const b = await new Response("abc").arrayBuffer(); return b instanceof ArrayBuffer && b.byteLength`, "3"},
		{"response bytes", `const b = await new Response("abc").bytes(); return b instanceof Uint8Array && b[2]`, "99"},
		{"response body used", `const r = new Response("x"); await r.text(); try { await r.text(); } catch (e) { return r.bodyUsed + " " + e.name; }`, "true TypeError"},
		{"response clone", `const r = new Response("x"); const c = r.clone(); return (await r.text()) + (await c.text())`, "xx"},
		{"response copies buffers", `const b = new Uint8Array([97]); const r = new Response(b); b[0] = 98; return await r.text()`, "a"},
		{"response status range", `try { new Response("", { status: 99 }); } catch (e) { return e.name; }`, "RangeError"},
		{"response null body status", `try { new Response("x", { status: 204 }); } catch (e) { return e.name; }`, "TypeError"},
		{"response redirect", `const r = Response.redirect("https://a.b/c", 301); return r.status + " " + r.headers.get("location")`, "301 https://a.b/c"},
		{"response stream", `const r = new Response("ab"); const rd = r.body.getReader(); const a = await rd.read(); const b = await rd.read(); return a.value.length + " " + a.done + " " + b.done + " " + r.bodyUsed`, "2 false true true"},
		{"response from stream", `const r = new Response(new Response("abc").body); return await r.text()`, "abc"},
		// Request
		{"request", `const r = new Request("http://a.b/c?d", { method: "post", headers: { "X-A": "1" }, body: "{\"k\":2}" }); return [r.method, r.url, r.headers.get("x-a"), r.headers.get("content-type"), (await r.json()).k].join("|")`, "POST|http://a.b/c?d|1|text/plain;charset=UTF-8|2"},
		{"request from request", `const a = new Request("http://a/", { method: "PUT", body: "x" }); const b = new Request(a, { headers: { y: "1" } }); return [b.method, b.headers.get("y"), await b.text(), a.bodyUsed].join("|")`, "PUT|1|x|true"},
		{"request clone", `const a = new Request("http://a/", { method: "POST", body: "x" }); const b = a.clone(); return (await a.text()) + (await b.text())`, "xx"},
		{"request get body", `try { new Request("http://a/", { body: "x" }); } catch (e) { return e.name; }`, "TypeError"},
		{"request relative", `try { new Request("/x"); } catch (e) { return e.name; }`, "TypeError"},
		{"request bad method", `try { new Request("http://a/", { method: "TRACE" }); } catch (e) { return e.name; }`, "TypeError"},
		{"request formData", `const r = new Request("http://a/", { method: "POST", body: new URLSearchParams("a=1") }); return (await r.formData()).get("a")`, "1"},
		// The rest
		{"crypto uuid", `const u = crypto.randomUUID(); return /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(u) && u !== crypto.randomUUID()`, "true"},
		{"crypto getRandomValues", `const a = crypto.getRandomValues(new Uint32Array(8)); return a.length === 8 && a.some((x) => x !== 0)`, "true"},
		{"crypto quota", `try { crypto.getRandomValues(new Uint8Array(65537)); } catch (e) { return e.name; }`, "QuotaExceededError"},
		{"math random", `const a = Math.random(), b = Math.random(); return a >= 0 && a < 1 && a !== b`, "true"},
		{"performance", `const a = performance.now(); return typeof a === "number" && performance.now() >= a`, "true"},
		{"globals", `return [typeof self, self === globalThis, typeof fetch, typeof structuredClone, typeof DOMException].join()`, "object,true,function,undefined,function"},
		{"instanceof", `return [new Response() instanceof Response, new Headers() instanceof Headers, Object.prototype.toString.call(new Headers())].join()`, "true,true,[object Headers]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.eval(t, tc.js)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// Math.random draws afresh for each request, so instances restored from one snapshot do not
// share its sequence: two engines in the same state answer differently.
func TestRandomPerRequest(t *testing.T) {
	script := `run(() => new Response(String(Math.random())))`
	a, b := newEngine(t, script), newEngine(t, script)
	ra, rb := a.mustDo(t, request(t, "GET", "/", "")), b.mustDo(t, request(t, "GET", "/", ""))
	if ra.body == rb.body {
		t.Errorf("two engines drew the same Math.random(): %s", ra.body)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, base string
		want     string // href, or "error"
	}{
		{"http://a.b", "", "http://a.b/"},
		{"  http://a.b/\tx\n ", "", "http://a.b/x"},
		{"http:a.b/c", "", "http://a.b/c"},
		{"https://a.b:443/", "", "https://a.b/"},
		{"ws://a.b:80/", "", "ws://a.b/"},
		{"http://a.b:65536/", "", "error"},
		{"http://a.b:0x1/", "", "error"},
		{"file:///tmp/x", "", "file:///tmp/x"},
		{"foo://h/p", "", "foo://h/p"},
		{"x", "", "error"},
		{"x", "mailto:a@b", "error"},
		{"?q", "http://a/b", "http://a/b?q"},
		{"//c.d/e", "https://a/b", "https://c.d/e"},
		{"http://a/%zz", "", "error"},
	} {
		var base *string
		if tc.base != "" {
			base = &tc.base
		}
		parts, err := parseURL(tc.in, base)
		got := "error"
		if err == nil {
			got = parts[0]
			if parts[8] != "" {
				got += "//" + parts[3]
				if parts[4] != "" {
					got += ":" + parts[4]
				}
			}
			got += parts[5] + parts[6] + parts[7]
		}
		if got != tc.want {
			t.Errorf("parseURL(%q, %q) = %q (%v); want %q", tc.in, tc.base, got, err, tc.want)
		}
	}
}
