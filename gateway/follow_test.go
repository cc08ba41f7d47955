package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

// twoNodes starts two gateways on one embedded NATS server, as two nodes of one deployment.
func twoNodes(t *testing.T) (a, b *testServer) {
	t.Helper()
	node, err := natsnode.Start(context.Background(), natsnode.Options{Dir: t.TempDir() + "/jetstream"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() }) // after both gateways: cleanups run last first
	return startServerOn(t, node, 0), startServerOn(t, node, 0)
}

// eventually polls s's path until check accepts the answer.
func (s *testServer) eventually(path string, check func(response) bool) response {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r := s.do("GET", path, nil, nil)
		if check(r) {
			return r
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("GET %s: still %d %q", path, r.status, r.body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestChangesThroughOneNodeReachTheOther(t *testing.T) {
	a, b := twoNodes(t)
	a.mustDeploy("hello", "hello", "")
	b.eventually("/hello/", func(r response) bool { return r.status == 200 && string(r.body) == "Hello WASM from Golang!" })

	// A new version through b replaces the old one on a: never a 404 or 5xx on the way.
	b.mustDeploy("hello", "echo", "")
	a.eventually("/hello/", func(r response) bool {
		if r.status != 200 {
			t.Fatalf("GET /hello/ on a while b's version arrives: %d %q", r.status, r.body)
		}
		return strings.Contains(string(r.body), `"method"`)
	})

	// Removed and deployed again at once through a: b may see the removal after the new
	// deploy is current, and must end up serving the new deploy, not nothing.
	if r := a.do("DELETE", "/_wisp/functions/hello", nil, map[string]string{"Authorization": "Bearer " + token}); r.status != 200 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	a.mustDeploy("hello", "hello", "")
	b.eventually("/hello/", func(r response) bool { return r.status == 200 && string(r.body) == "Hello WASM from Golang!" })
	time.Sleep(200 * time.Millisecond) // let any late event land
	if r := b.do("GET", "/hello/", nil, nil); r.status != 200 {
		t.Fatalf("b after remove and redeploy: %d %q; want the redeployed function", r.status, r.body)
	}
	info := b.do("GET", "/_wisp/functions/hello", nil, map[string]string{"Authorization": "Bearer " + token}).json(t)
	if info["version"] != 1.0 || info["routed_version"] != 1.0 {
		t.Fatalf("b's view of hello: %v; want version 1 routed", info)
	}

	// A removal through b stops a.
	if r := b.do("DELETE", "/_wisp/functions/hello", nil, map[string]string{"Authorization": "Bearer " + token}); r.status != 200 {
		t.Fatalf("remove through b: %d %s", r.status, r.body)
	}
	a.eventually("/hello/", func(r response) bool { return r.status == 404 })
}
