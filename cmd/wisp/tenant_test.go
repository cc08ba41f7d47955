package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// wispAs runs the CLI against p with token as WISP_TOKEN.
func wispAs(t *testing.T, p *process, token string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(wispBin, append(args, "--addr", p.url)...)
	cmd.Env = append(os.Environ(), "WISP_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A tenant's token, made with the CLI, deploys as the tenant and sees only its functions;
// revoked, it opens nothing.
func TestTenantTokenCLI(t *testing.T) {
	p := startWisp(t, t.TempDir())
	out, err := wispAs(t, p, e2eToken, "tenant", "token", "acme")
	if err != nil || !strings.HasPrefix(out, "wt_acme_") {
		t.Fatalf("tenant token acme: %q %v", out, err)
	}
	acme := strings.TrimSpace(out)
	if out, err := wispAs(t, p, acme, "tenant", "token", "beta"); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("a tenant making tokens: %q %v; want a 403", out, err)
	}
	if _, err := p.cli("deploy", "opfn", buildtest.Dir("hello")); err != nil {
		t.Fatal(err)
	}
	if out, err := wispAs(t, p, acme, "deploy", "acmefn", buildtest.Dir("hello")); err != nil {
		t.Fatalf("deploy with acme's token: %q %v", out, err)
	}
	out, err = wispAs(t, p, acme, "ls")
	if err != nil || !strings.Contains(out, "acmefn") || strings.Contains(out, "opfn") {
		t.Fatalf("ls with acme's token:\n%s%v\nwant acmefn only", out, err)
	}
	if out, err := wispAs(t, p, acme, "rm", "opfn"); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("rm of the operator's function with acme's token: %q %v; want a 404", out, err)
	}
	if out, err := wispAs(t, p, e2eToken, "tenant", "revoke", "acme"); err != nil || !strings.Contains(out, "acme: 1 tokens revoked") {
		t.Fatalf("revoke: %q %v", out, err)
	}
	if out, err := wispAs(t, p, acme, "ls"); err == nil || !strings.Contains(out, "401") {
		t.Fatalf("ls with a revoked token: %q %v; want a 401", out, err)
	}
	if status, body := get(t, p.url+"/acmefn/"); status != 200 {
		t.Fatalf("acmefn after the revocation: %d %s", status, body)
	}
}
