package gateway_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/wispfn/wisp/gateway"
	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/tenants"
	"github.com/wispfn/wisp/sdk/build/buildtest"
)

func TestTenantTokens(t *testing.T) {
	node, err := natsnode.Start(context.Background(), natsnode.Options{Dir: t.TempDir() + "/jetstream"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	toks, err := tenants.Open(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	s := startServerOn(t, node, 0, func(cfg *gateway.Config) { cfg.Tenants = toks })
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	newToken := func(tenant string) string {
		r := s.do("POST", "/_wisp/tenants/"+tenant+"/tokens", nil, auth)
		if r.status != http.StatusCreated {
			t.Fatalf("token for %s: %d %s", tenant, r.status, r.body)
		}
		return r.json(t)["token"].(string)
	}
	acme, beta := newToken("acme"), newToken("beta")
	hello := buildtest.Wasm(t, "hello")
	s.mustDeploy("op", "hello", "") // the operator's, no tenant

	// A tenant deploys as itself, into its own namespace.
	r := s.do("PUT", "/_wisp/functions/a1", hello, bearer(acme))
	if r.status != http.StatusCreated {
		t.Fatalf("acme deploys a1: %d %s", r.status, r.body)
	}
	if m := r.json(t); m["tenant"] != "acme" || m["kv_namespace"] != "acme" {
		t.Fatalf("a1 deployed by acme: tenant %v, kv namespace %v; want acme, acme", m["tenant"], m["kv_namespace"])
	}

	for _, tt := range []struct {
		name, method, path, tok string
		body                    []byte
		status                  int
	}{
		// what a tenant may not do
		{"deploy as another tenant", "PUT", "/_wisp/functions/a2?tenant=beta", acme, hello, 403},
		{"another namespace", "PUT", "/_wisp/functions/a2?kv_namespace=op", acme, hello, 403},
		{"deploy over another's name", "PUT", "/_wisp/functions/op", acme, hello, 409},
		{"deploy over another tenant's", "POST", "/_wisp/functions/a1", beta, hello, 409},
		{"get another's", "GET", "/_wisp/functions/op", acme, nil, 404},
		{"versions of another's", "GET", "/_wisp/functions/op/versions", acme, nil, 404},
		{"rollback another's", "POST", "/_wisp/functions/op/rollback", acme, nil, 404},
		{"logs of another's", "GET", "/_wisp/logs/op", acme, nil, 404},
		{"invoke another's", "GET", "/_wisp/invoke/op/x", acme, nil, 404},
		{"profile another's", "GET", "/_wisp/profile/op?seconds=1", acme, nil, 404},
		{"remove another tenant's", "DELETE", "/_wisp/functions/a1", beta, nil, 404},
		{"make tokens", "POST", "/_wisp/tenants/acme/tokens", acme, nil, 403},
		{"revoke tokens", "DELETE", "/_wisp/tenants/beta/tokens", acme, nil, 403},
		// malformed input
		{"bad tenant name", "POST", "/_wisp/tenants/Bad_Name/tokens", token, nil, 400},
		{"bad token", "GET", "/_wisp/functions", "wt_acme_0000", nil, 401},
		// what it may
		{"get its own", "GET", "/_wisp/functions/a1", acme, nil, 200},
		{"invoke its own", "GET", "/_wisp/invoke/a1/", acme, nil, 200},
		{"versions of its own", "GET", "/_wisp/functions/a1/versions", acme, nil, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := s.do(tt.method, tt.path, tt.body, bearer(tt.tok)); r.status != tt.status {
				t.Fatalf("%s %s: %d %s; want %d", tt.method, tt.path, r.status, r.body, tt.status)
			}
		})
	}

	list := func(tok string) []string {
		r := s.do("GET", "/_wisp/functions", nil, bearer(tok))
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		var names []string
		for _, f := range r.json(t)["functions"].([]any) {
			names = append(names, f.(map[string]any)["name"].(string))
		}
		return names
	}
	if got := list(acme); len(got) != 1 || got[0] != "a1" {
		t.Fatalf("acme lists %v; want [a1]", got)
	}
	if got := list(beta); len(got) != 0 {
		t.Fatalf("beta lists %v; want nothing", got)
	}
	if got := list(token); len(got) != 2 {
		t.Fatalf("the operator lists %v; want both", got)
	}
	if r := s.do("GET", "/op/", nil, nil); r.status != 200 {
		t.Fatalf("op still served: %d", r.status)
	}

	// Revoked, a token opens nothing; the tenant's functions stay.
	if r := s.do("DELETE", "/_wisp/tenants/acme/tokens", nil, auth); r.status != 200 || r.json(t)["revoked"] != 1.0 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/_wisp/functions", nil, bearer(acme)); r.status != 401 {
		t.Fatalf("a revoked token: %d %s", r.status, r.body)
	}
	if r := s.do("GET", "/a1/", nil, nil); r.status != 200 {
		t.Fatalf("a1 after its tenant's tokens were revoked: %d", r.status)
	}
	if r := s.do("DELETE", "/_wisp/functions/a1", nil, bearer(beta)); r.status != 404 {
		t.Fatalf("beta removes a1: %d", r.status)
	}
}
