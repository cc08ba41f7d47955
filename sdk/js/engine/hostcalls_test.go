package engine

import (
	"strings"
	"testing"

	"github.com/dop251/goja"

	"github.com/wispfn/wisp/sdk/go/faas/http"
)

// Natively there is no host: every hostcall fails at once with the Go SDK's "not running inside
// Wisp" error, which is how these tests see a call reach the host and its failure come back.
// The calls that succeed are tested end to end, against the real host, in cmd/wisp.

const noHost = "not running inside Wisp"

// newEnvEngine returns an engine whose global env is the handler's env, for eval.
func newEnvEngine(t *testing.T) engine {
	e := newEngine(t, `run((request, env) => { globalThis.env = env; return new Response("ok"); })`)
	e.mustDo(t, request(t, "GET", "/", ""))
	return e
}

// TestHostcallArguments: what cannot be sent rejects the promise with a TypeError before any
// hostcall; what can be sent reaches the host, whose refusal rejects the promise.
func TestHostcallArguments(t *testing.T) {
	e := newEnvEngine(t)
	for _, tc := range []struct{ name, js, want string }{
		// fetch
		{"fetch without url", `await fetch()`, "TypeError: fetch: a URL or a Request is required"},
		{"fetch relative url", `await fetch("/x")`, `TypeError: Invalid URL "/x": it is relative`},
		{"fetch invalid url", `await fetch("http://")`, `TypeError: Invalid URL "http://": no host`},
		{"fetch other scheme", `await fetch("mailto:a@b.example")`, "TypeError: fetch: cannot fetch mailto:a@b.example: only http and https"},
		{"fetch redirect manual", `await fetch("http://a.example/", { redirect: "manual" })`, `TypeError: fetch: redirect "manual" is not supported`},
		{"fetch GET with body", `await fetch("http://a.example/", { body: "x" })`, "TypeError: Request with GET method cannot have a body"},
		{"fetch bad header", `await fetch("http://a.example/", { headers: { "a b": "1" } })`, `TypeError: Invalid header name: "a b"`},
		{"fetch bad method", `await fetch("http://a.example/", { method: "CONNECT" })`, "TypeError: Forbidden method"},
		{"fetch used body", `const r = new Request("http://a.example/", { method: "POST", body: "x" }); await r.text(); await fetch(r)`, "TypeError: Request: the input Request's body was read already"},
		{"fetch sent", `await fetch("http://a.example/x?y=1")`, "TypeError: fetch http://a.example/x?y=1: " + noHost},
		{"fetch sent from Request", `await fetch(new Request(new URL("https://a.example/"), { method: "PUT", body: new Uint8Array([1, 2]).subarray(1), headers: { "X-A": "1" } }))`, "TypeError: fetch https://a.example/: " + noHost},
		{"fetch sent with init", `await fetch("http://a.example/", { method: "POST", body: new URLSearchParams({ a: "1" }), redirect: "follow" })`, "TypeError: fetch http://a.example/: " + noHost},
		{"fetch with null body", `await fetch("http://a.example/", { body: null })`, "TypeError: fetch http://a.example/: " + noHost},
		// KV
		{"get number key", `await env.KV.get(1)`, "TypeError: KV get: the key must be a string, not a number"},
		{"get empty key", `await env.KV.get("")`, "TypeError: KV get: the key must not be empty"},
		{"get stream", `await env.KV.get("k", "stream")`, `TypeError: KV get: type "stream" is not supported in Wisp`},
		{"get unknown type", `await env.KV.get("k", { type: "blob" })`, `TypeError: KV get: type "blob" is unknown`},
		{"get prototype type", `await env.KV.get("k", "toString")`, `TypeError: KV get: type "toString" is unknown`},
		{"get sent", `await env.KV.get("k")`, `Error: KV get "k": ` + noHost},
		{"get json sent", `await env.KV.get("k", { type: "json", cacheTtl: 60 })`, `Error: KV get "k": ` + noHost},
		{"getWithMetadata sent", `await env.KV.getWithMetadata("k", "arrayBuffer")`, `Error: KV get "k": ` + noHost},
		{"put object key", `await env.KV.put({}, "v")`, "TypeError: KV put: the key must be a string, not an object"},
		{"put number", `await env.KV.put("k", 42)`, "TypeError: KV put: the value must be a string, an ArrayBuffer or a typed array, not a number"},
		{"put object", `await env.KV.put("k", { a: 1 })`, "TypeError: KV put: the value must be a string, an ArrayBuffer or a typed array, not an object"},
		{"put undefined", `await env.KV.put("k")`, "not undefined"},
		{"put stream", `await env.KV.put("k", new Response("x").body)`, "not a ReadableStream"},
		{"put bad ttl", `await env.KV.put("k", "v", { expirationTtl: -1 })`, "TypeError: KV put: expirationTtl must be a positive number of seconds, not -1"},
		{"put past expiration", `await env.KV.put("k", "v", { expiration: 1 })`, "TypeError: KV put: expiration 1 is in the past"},
		{"put metadata", `await env.KV.put("k", "v", { metadata: { a: 1 } })`, "TypeError: KV put: metadata is not supported"},
		{"put sent", `await env.KV.put("k", "v", { expirationTtl: 60 })`, `Error: KV put "k": ` + noHost},
		{"put bytes sent", `await env.KV.put("k", new Uint16Array([1, 2]).subarray(1))`, `Error: KV put "k": ` + noHost},
		{"put buffer sent", `await env.KV.put("k", new ArrayBuffer(3), { expiration: Date.now() / 1000 + 60 })`, `Error: KV put "k": ` + noHost},
		{"delete empty key", `await env.KV.delete("")`, "TypeError: KV delete: the key must not be empty"},
		{"delete sent", `await env.KV.delete("k")`, `Error: KV delete "k": ` + noHost},
		{"list cursor", `await env.KV.list({ cursor: "abc" })`, "TypeError: KV list: cursor is not supported"},
		{"list limit", `await env.KV.list({ limit: 0 })`, "TypeError: KV list: limit must be a positive integer, not 0"},
		{"list prefix", `await env.KV.list({ prefix: 1 })`, "TypeError: KV list: prefix must be a string, not a number"},
		{"list sent", `await env.KV.list({ prefix: "user.", limit: 10 })`, `Error: KV list "user.": ` + noHost},
		{"list all sent", `await env.KV.list()`, `Error: KV list "": ` + noHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.eval(t, "try {\n"+tc.js+"\n} catch (e) { return String(e); }\nreturn 'no error';")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("got  %q\nwant %q in it", got, tc.want)
			}
			if len(e.calls) != 0 {
				t.Errorf("%d calls left in flight", len(e.calls))
			}
		})
	}
}

// TestHostcallsInHandler: a handler waits for its calls through the engine's loop (here: their
// refusal), catches the rejections, and the calls are delivered oldest first.
func TestHostcallsInHandler(t *testing.T) {
	e := newEngine(t, `run(async (request, env) => {
  const out = [typeof env.KV, Object.prototype.toString.call(env.KV), env.GREETING];
  try {
    await fetch("http://a.example/");
  } catch (e) {
    out.push(e.name + " " + (e instanceof TypeError) + " " + e.message);
  }
  out.push(String(await env.KV.get("k").catch((e) => e.message)));
  // Settled in submission order: the race goes to the call started first.
  out.push(await Promise.race([env.KV.delete("first"), fetch("http://second.example/")]).catch((e) => e.message));
  out.push(await Promise.race([fetch("http://first.example/"), env.KV.delete("second")]).catch((e) => e.message));
  // A timer and a call, both pending.
  const [, listed] = await Promise.allSettled([new Promise((r) => setTimeout(r, 1)), env.KV.list()]);
  out.push(listed.status);
  return new Response(out.join("\n"));
});`)
	want := strings.Join([]string{
		"object", "[object KVNamespace]", "hi",
		"TypeError true fetch http://a.example/: " + noHost + ": hostcalls work only inside Wisp: build the function with `wisp build`",
		`KV get "k": ` + noHost + ": hostcalls work only inside Wisp: build the function with `wisp build`",
		`KV delete "first": ` + noHost,
		`fetch http://first.example/: ` + noHost,
		"rejected",
	}, "\n")
	for range 2 {
		r := e.mustDo(t, request(t, "GET", "/", ""))
		if !matchLines(r.body, want) {
			t.Errorf("got\n%s\nwant\n%s", r.body, want)
		}
	}
}

// matchLines reports whether each line of got starts with the line of want.
func matchLines(got, want string) bool {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		if !strings.HasPrefix(g[i], w[i]) {
			return false
		}
	}
	return true
}

// TestCallsEndWithRequest: calls still in flight when the response is ready are dropped, and a
// promise waiting for nothing that can happen still fails, once the calls are done.
func TestCallsEndWithRequest(t *testing.T) {
	e := newEngine(t, `
fetch("http://top.example/"); // started while the script runs, outside any request: dropped
run(async (request, env) => {
  const path = new URL(request.url).pathname;
  if (path === "/sync") {
    fetch("http://a.example/");
    env.KV.put("k", "v");
    return new Response("sync");
  }
  if (path === "/never") {
    await fetch("http://a.example/").catch(() => {});
    return new Promise(() => {});
  }
  return new Response("after");
});
`)
	if len(e.calls) != 0 {
		t.Errorf("New left %d calls in flight", len(e.calls))
	}
	if r := e.mustDo(t, request(t, "GET", "/sync", "")); r.body != "sync" || len(e.calls) != 0 {
		t.Errorf("/sync: %q, %d calls left", r.body, len(e.calls))
	}
	if _, err := e.do(t, request(t, "GET", "/never", "")); err == nil || !strings.Contains(err.Error(), "never settled") ||
		!strings.Contains(err.Error(), "no fetch or KV call is in flight") {
		t.Errorf("/never: %v; want the promise reported as never settled", err)
	}
	// A call started outside a request (here by the test) is dropped by the next request.
	if _, err := e.vm.RunString(`fetch("http://outside.example/")`); err != nil {
		t.Fatal(err)
	}
	if len(e.calls) != 1 {
		t.Fatalf("%d calls in flight; want 1", len(e.calls))
	}
	if r := e.mustDo(t, request(t, "GET", "/", "")); r.body != "after" || len(e.calls) != 0 {
		t.Errorf("/: %q, %d calls left", r.body, len(e.calls))
	}
}

// TestCompletions checks how results become JavaScript values. The host is faked at the one
// point where it cannot run here: the call's wait returns what the Go SDK would.
func TestCompletions(t *testing.T) {
	e := newEnvEngine(t)
	body := []byte("héllo")
	fetched := func() (goja.Value, error) {
		return e.response(&http.Response{StatusCode: 201, Header: http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"1", "2"}},
			Body: http.MustNewBody(body)})
	}
	value := func(s string) func() (goja.Value, error) {
		return func() (goja.Value, error) { return e.vm.ToValue(e.vm.NewArrayBuffer([]byte(s))), nil }
	}
	null := func() (goja.Value, error) { return goja.Null(), nil }
	for _, tc := range []struct {
		name  string
		js    string
		waits []func() (goja.Value, error)
		want  string
	}{
		{"fetch", `const r = await fetch("http://a.example/p"); const b = new Uint8Array(await r.clone().arrayBuffer());
return [r.status, r.ok, r.url, r.headers.get("content-type"), r.headers.get("X-Multi"), b.length, await r.text(), r.bodyUsed].join("|")`,
			[]func() (goja.Value, error){fetched}, "201|true|http://a.example/p|text/plain|1, 2|6|héllo|true"},
		{"fetch headers immutable", `const r = await fetch("http://a.example/"); try { r.headers.set("a", "1"); } catch (e) { return e.message + "|" + new Response(r.body, r).headers.get("x-multi"); }`,
			[]func() (goja.Value, error){fetched}, "Headers are immutable|1, 2"},
		{"fetch HEAD", `const r = await fetch("http://a.example/", { method: "HEAD" }); return String(r.body) + "|" + (await r.text()).length`,
			[]func() (goja.Value, error){fetched}, "null|0"},
		{"fetch json", `return (await (await fetch("http://a.example/")).json()).a`,
			[]func() (goja.Value, error){func() (goja.Value, error) {
				return e.response(&http.Response{StatusCode: 200, Header: http.Header{}, Body: http.MustNewBody([]byte(`{"a":"b"}`))})
			}}, "b"},
		{"get text", `return await env.KV.get("k")`, []func() (goja.Value, error){value("vé")}, "vé"},
		{"get missing", `return String(await env.KV.get("k"))`, []func() (goja.Value, error){null}, "null"},
		{"get missing json", `return String(await env.KV.get("k", "json"))`, []func() (goja.Value, error){null}, "null"},
		{"get json", `return (await env.KV.get("k", { type: "json" })).n + 1`, []func() (goja.Value, error){value(`{"n":41}`)}, "42"},
		{"get bad json", `try { await env.KV.get("k", "json"); } catch (e) { return e.name; }`, []func() (goja.Value, error){value(`{`)}, "SyntaxError"},
		{"get arrayBuffer", `const b = await env.KV.get("k", "arrayBuffer"); return b instanceof ArrayBuffer && b.byteLength`, []func() (goja.Value, error){value("abc")}, "3"},
		{"getWithMetadata", `return JSON.stringify(await env.KV.getWithMetadata("k"))`, []func() (goja.Value, error){value("v")}, `{"value":"v","metadata":null,"cacheStatus":null}`},
		{"put", `return String(await env.KV.put("k", "v"))`, []func() (goja.Value, error){func() (goja.Value, error) { return goja.Undefined(), nil }}, "undefined"},
		{"list", `return JSON.stringify(await env.KV.list({ prefix: "a" }))`, []func() (goja.Value, error){func() (goja.Value, error) {
			return e.vm.NewArray(e.vm.NewArray("a.1", "a.2"), true), nil
		}}, `{"keys":[{"name":"a.1"},{"name":"a.2"}],"list_complete":false,"cacheStatus":null}`},
		{"all", `const [a, b] = await Promise.all([env.KV.get("a"), env.KV.get("b")]); return a + b`,
			[]func() (goja.Value, error){value("1"), value("2")}, "12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := e.vm.RunString("(async () => {\n" + tc.js + "\n})()")
			if err != nil {
				t.Fatal(err)
			}
			if len(e.calls) != len(tc.waits) {
				t.Fatalf("%d calls in flight; want %d", len(e.calls), len(tc.waits))
			}
			for i, w := range tc.waits {
				e.calls[i].wait = w
			}
			v, err = e.settle(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
