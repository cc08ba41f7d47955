package gateway_test

import (
	"context"
	"strings"
	"testing"

	"github.com/wispfn/wisp/gateway"
	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/nodes"
	"github.com/wispfn/wisp/sched"
	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// gatewayAndRuntime starts two gateways on one NATS server: front, in a pool no tenant runs in
// (a gateway only), and back, in the shared pool, which front forwards every request to.
func gatewayAndRuntime(t testing.TB) (front, back *testServer) {
	t.Helper()
	node, err := natsnode.Start(context.Background(), natsnode.Options{Dir: t.TempDir() + "/jetstream"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	inPool := func(pool string, c **gateway.Cluster) func(*gateway.Config) {
		return func(cfg *gateway.Config) {
			sc, err := sched.New(sched.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sc.Close)
			*c = &gateway.Cluster{Self: "http://" + cfg.Listener.Addr().String(), Pool: pool, Sched: sc}
			cfg.Cluster = *c
		}
	}
	var fc, bc *gateway.Cluster
	back = startServerOn(t, node, 0, inPool("shared", &bc))
	front = startServerOn(t, node, 0, inPool("gateway", &fc))
	if err := fc.SetMembers([]nodes.Member{{URL: front.url, Pool: "gateway", Weight: 1}, {URL: back.url, Pool: "shared", Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	return front, back
}

func TestForwarding(t *testing.T) {
	front, back := gatewayAndRuntime(t)
	back.mustDeploy("echo", "echo", "")
	front.eventually("/echo/", func(r response) bool { return r.status == 200 })

	// Through the gateway-only node: the guest sees the client's request, none of the
	// gateways' headers, and the client's address.
	r := front.do("GET", "/echo/a/b?x=1", nil, map[string]string{"X-Wisp-Forwarded": "not the token", "X-Wisp-Version": "7", "X-Custom": "kept"})
	if r.status != 200 {
		t.Fatalf("through front: %d %s", r.status, r.body)
	}
	echo := r.json(t)
	if echo["path"] != "/a/b" || echo["raw_query"] != "x=1" || !strings.HasPrefix(echo["remote_addr"].(string), "127.0.0.1:") {
		t.Fatalf("the guest saw %v", echo)
	}
	for h := range echo["headers"].(map[string]any) {
		if strings.HasPrefix(strings.ToLower(h), "x-wisp-") {
			t.Fatalf("the guest saw the gateways' header %s: %v", h, echo["headers"])
		}
	}
	if echo["headers"].(map[string]any)["X-Custom"] == nil {
		t.Fatalf("the client's own header was lost: %v", echo["headers"])
	}

	// Forwarded requests a node cannot serve go back unserved (421 + X-Wisp-Not-Ready), for
	// the forwarding node to try another: a version it has not routed, a function it does not
	// know, or one it does not run.
	fwd := func(version string) map[string]string {
		h := map[string]string{"X-Wisp-Forwarded": token}
		if version != "" {
			h["X-Wisp-Version"] = version
		}
		return h
	}
	for _, tt := range []struct {
		name   string
		s      *testServer
		path   string
		hdr    map[string]string
		status int
	}{
		{"routed version", back, "/echo/", fwd("1"), 200},
		{"no version", back, "/echo/", fwd(""), 200},
		{"malformed version", back, "/echo/", fwd("x"), 200},
		{"later version", back, "/echo/", fwd("2"), 421},
		{"unknown function", back, "/nope/", fwd("1"), 421},
		{"not run here", front, "/echo/", fwd("1"), 421},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.s.do("GET", tt.path, nil, tt.hdr)
			if r.status != tt.status || (tt.status == 421) != (r.header.Get("X-Wisp-Not-Ready") != "") {
				t.Fatalf("%d %q (not ready: %q); want %d", r.status, r.body, r.header.Get("X-Wisp-Not-Ready"), tt.status)
			}
		})
	}
	// A deploy forwarded to a node outside the function's pool is refused, not compiled.
	if r := front.do("PUT", "/_wisp/functions/stray", buildtest.Wasm(t, "hello"), map[string]string{"Authorization": "Bearer " + token, "X-Wisp-Forwarded": token}); r.status != 421 || !strings.Contains(string(r.body), "--isolate") {
		t.Fatalf("deploy forwarded to a gateway-only node: %d %s; want 421", r.status, r.body)
	}

	// Without the token, the forwarding headers are the client's: front forwards as usual.
	if r := front.do("GET", "/echo/", nil, map[string]string{"X-Wisp-Forwarded": "guess"}); r.status != 200 {
		t.Fatalf("front with a guessed token: %d %s", r.status, r.body)
	}
}

// BenchmarkGatewayForward is BenchmarkGatewayHello through a gateway-only node: the cost of the
// hop to the runtime node (a second Hertz request on loopback).
func BenchmarkGatewayForward(b *testing.B) {
	front, back := gatewayAndRuntime(b)
	back.mustDeploy("hello", "hello", "")
	front.eventually("/hello/", func(r response) bool { return r.status == 200 })
	benchHello(b, front.url)
}
