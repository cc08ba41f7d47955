package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// Nodes on one NATS: a in the shared pool, b and c in the pool "private" that tenant acme is
// isolated into, g a gateway only. acme's function runs only on b and c, spread over both,
// whichever node the client reaches; everyone else's runs only on a. With b and c gone, acme's
// requests fail with a 503 rather than run on a.
func TestIsolatedTenantRunsOnlyOnItsPool(t *testing.T) {
	isolate := []string{"--isolate", "acme=private"}
	a := startWisp(t, t.TempDir(), append([]string{"--nats-listen", "127.0.0.1:0"}, isolate...)...)
	natsURL := a.printed(t, "wisp: nats on ")
	b := startWisp(t, t.TempDir(), append([]string{"--nats", natsURL, "--pool", "private"}, isolate...)...)
	c := startWisp(t, t.TempDir(), append([]string{"--nats", natsURL, "--pool", "private", "--weight", "2"}, isolate...)...)

	// A deploy of acme's function through a shared node goes to a node of acme's pool, which
	// compiles it; one of everyone else's through a private node goes to a.
	if _, err := a.cli("deploy", "secret", buildtest.Dir("echo"), "--tenant", "acme"); err != nil {
		t.Fatalf("deploy of acme's function through a: %v", err)
	}
	if _, err := b.cli("deploy", "hello", buildtest.Dir("hello")); err != nil {
		t.Fatalf("deploy of a shared function through b: %v", err)
	}
	for _, p := range []*process{a, b, c} {
		waitStatus(t, p.url+"/secret/", 200, 3*time.Minute)
		waitStatus(t, p.url+"/hello/", 200, 3*time.Minute)
	}

	served := func(p *process, fn string) float64 {
		return max(p.metric(t, `wisp_pool_starts_total{function="`+fn+`",tier="cold"}`), 0) +
			max(p.metric(t, `wisp_pool_starts_total{function="`+fn+`",tier="disk"}`), 0) +
			max(p.metric(t, `wisp_pool_starts_total{function="`+fn+`",tier="hot"}`), 0)
	}
	beforeB, beforeC := served(b, "secret"), served(c, "secret")
	const n = 100
	for i := range n {
		req, _ := http.NewRequest("GET", a.url+"/secret/x?i=1", nil)
		req.Host = "tenant.example"
		req.Header.Set("X-Wisp-Forwarded", "guess") // a client cannot skip the scheduler
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var echo struct {
			Path       string              `json:"path"`
			Host       string              `json:"host"`
			RemoteAddr string              `json:"remote_addr"`
			Headers    map[string][]string `json:"headers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&echo)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d through a: %d %v", i, resp.StatusCode, err)
		}
		if echo.Path != "/x" || echo.Host != "tenant.example" || !strings.HasPrefix(echo.RemoteAddr, "127.0.0.1:") {
			t.Fatalf("the guest saw path %q, host %q, remote address %q; want /x, the client's host and address", echo.Path, echo.Host, echo.RemoteAddr)
		}
		for h := range echo.Headers {
			if strings.HasPrefix(strings.ToLower(h), "x-wisp-") {
				t.Fatalf("the guest saw the gateways' header %s", h)
			}
		}
	}
	onB, onC := served(b, "secret")-beforeB, served(c, "secret")-beforeC
	for _, node := range []*process{b, c} {
		series := `{pool="private",target="` + node.url + `"}`
		if v := a.metric(t, `wisp_sched_target_effective_weight`+series); v <= 0 {
			t.Fatalf("a's scheduler weighs %s at %v; want it above 0", node.url, v)
		}
		t.Logf("a's view of %s: latency EWMA %.0f µs, effective weight %.2f", node.url,
			a.metric(t, `wisp_sched_target_latency_ewma_seconds`+series)*1e6, a.metric(t, `wisp_sched_target_effective_weight`+series))
	}
	t.Logf("%d requests for acme's function through a: %v ran on b (weight 1), %v on c (weight 2)", n, onB, onC)
	if onB+onC != n || onB == 0 || onC == 0 {
		t.Fatalf("b ran %v and c %v of %d requests; want all of them, spread over both", onB, onC, n)
	}
	if v := served(a, "secret"); v != 0 {
		t.Fatalf("a, outside acme's pool, ran acme's function %v times", v)
	}
	if v := a.metric(t, `wisp_pool_compile_seconds_count{function="secret"}`); v > 0 {
		t.Fatalf("a compiled acme's function")
	}
	if v := served(b, "hello") + served(c, "hello"); v != 0 {
		t.Fatalf("the private pool ran a shared function %v times", v)
	}
	if status, _ := get(t, b.url+"/hello/"); status != 200 {
		t.Fatalf("hello through b: %d", status)
	}

	// A node whose pool no tenant runs in is a gateway only: it compiles nothing and forwards
	// every request, to the shared pool or to acme's.
	g := startWisp(t, t.TempDir(), append([]string{"--nats", natsURL, "--pool", "gateway"}, isolate...)...)
	for _, path := range []string{"/hello/", "/secret/"} {
		if status, body := get(t, g.url+path); status != 200 {
			t.Fatalf("GET %s through the gateway-only node: %d %s", path, status, body)
		}
	}
	if v := g.metric(t, `wisp_pool_compile_seconds_count{function="hello"}`) + g.metric(t, `wisp_pool_compile_seconds_count{function="secret"}`); v != -2 {
		t.Fatalf("the gateway-only node compiled functions (%v)", v)
	}
	if v := g.metric(t, `wisp_gateway_forwards_total{outcome="ok"}`); v != 2 {
		t.Fatalf("the gateway-only node forwarded %v requests; want 2", v)
	}

	// A new version: through a, requests keep being answered, by the old version until a routes
	// the new one and by the new one from then on, never by the old again, even while one of
	// the pool's nodes is still compiling it (that node sends them back and another serves).
	notReadyBefore := max(a.metric(t, `wisp_gateway_forwards_total{outcome="not_ready"}`), 0)
	deployed := make(chan error, 1)
	go func() {
		_, err := a.cli("deploy", "secret", buildtest.Dir("hello"), "--tenant", "acme")
		deployed <- err
	}()
	sawNew, requests := false, 0
	for deadline := time.Now().Add(3 * time.Minute); ; requests++ {
		status, body := get(t, a.url+"/secret/")
		switch {
		case status != 200:
			t.Fatalf("request %d during the deploy: %d %s", requests, status, body)
		case body == "Hello WASM from Golang!":
			sawNew = true
		case sawNew:
			t.Fatalf("request %d: the old version answered after the new one had: %s", requests, body)
		}
		if sawNew && len(deployed) == 1 && requests > 200 || time.Now().After(deadline) {
			break
		}
	}
	if err := <-deployed; err != nil || !sawNew {
		t.Fatalf("second deploy of secret: %v; new version seen: %v", err, sawNew)
	}
	t.Logf("%d requests through a during and after the deploy, all answered; %v sent back by a node not ready", requests,
		a.metric(t, `wisp_gateway_forwards_total{outcome="not_ready"}`)-notReadyBefore)

	// acme's pool gone: its requests fail; they never fall back to the shared pool.
	b.stop(syscall.SIGTERM)
	c.stop(syscall.SIGTERM)
	status := waitStatus(t, a.url+"/secret/", 503, 30*time.Second)
	t.Logf("a answered 503 for acme's function %v after its pool stopped", status)
	if v := served(a, "secret"); v != 0 {
		t.Fatalf("a ran acme's function %v times after its pool stopped", v)
	}
	if status, _ := get(t, a.url+"/hello/"); status != 200 {
		t.Fatalf("hello through a after the private pool stopped: %d", status)
	}
}

func TestServeClusterFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--isolate", "acme"}, "want TENANT=POOL"},
		{[]string{"--isolate", "Acme=private"}, "Acme"},
		{[]string{"--isolate", "acme=Private"}, "Private"},
		{[]string{"--isolate", "acme=shared"}, "shared"},
		{[]string{"--isolate", "acme=p", "--isolate", "acme=q"}, "given twice"},
		{[]string{"--pool", "Bad Pool"}, "--pool"},
		{[]string{"--weight", "0"}, "--weight 0"},
		{[]string{"--advertise", "https://127.0.0.1:1"}, "--advertise"},
	} {
		cmd := exec.Command(wispBin, append([]string{"serve", "--listen", "127.0.0.1:0", "--data", t.TempDir()}, tt.args...)...)
		cmd.Env = append(os.Environ(), "WISP_TOKEN="+e2eToken)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tt.want) {
			t.Errorf("serve %v: %v\n%s\nwant a refusal mentioning %q", tt.args, err, out, tt.want)
		}
	}
}
