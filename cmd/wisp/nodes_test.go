package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// printed returns the rest of the first line p printed that starts with prefix.
func (p *process) printed(t *testing.T, prefix string) string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return v
		}
	}
	t.Fatalf("wisp serve printed no line starting %q", prefix)
	return ""
}

// metric reads one series from p's /metrics; -1 when it is absent.
func (p *process) metric(t *testing.T, series string) float64 {
	t.Helper()
	status, body := get(t, p.url+"/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics: %d", status)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("series %s: %v", series, err)
			}
			return f
		}
	}
	return -1
}

// waitStatus polls url until it answers want, and returns how long that took.
func waitStatus(t *testing.T, url string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		status, body := get(t, url)
		if status == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("GET %s: %d %q after %v; want %d", url, status, body, within, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Two nodes on one NATS: the second embeds none and uses the first's. A change made through
// either is served by both, and the node that learns of a new version compiles and
// pre-initializes it before routing to it, so its first request is an ordinary cold start.
func TestTwoNodesShareOneRegistry(t *testing.T) {
	a := startWisp(t, t.TempDir(), "--nats-listen", "127.0.0.1:0")
	b := startWisp(t, t.TempDir(), "--nats", a.printed(t, "wisp: nats on "))
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, buildtest.Wasm(t, "hello"), 0o644); err != nil {
		t.Fatal(err)
	}

	if _, err := a.cli("deploy", "hello", wasm); err != nil {
		t.Fatalf("deploy through a: %v", err)
	}
	lag := waitStatus(t, b.url+"/hello/", 200, 3*time.Minute)
	t.Logf("b served hello %v after a acknowledged its deploy", lag)
	if v := b.metric(t, `wisp_gateway_registry_changes_total{outcome="routed"}`); v != 1 {
		t.Fatalf("b routed %v changes from the registry; want 1", v)
	}
	if v := b.metric(t, `wisp_pool_starts_total{function="hello",tier="cold"}`); v != 1 {
		t.Fatalf("b's first request: %v cold starts; want 1 (the code compiled before routing)", v)
	}
	if v := b.metric(t, `wisp_pool_disk_loads_total`); v != 0 {
		t.Fatalf("b reloaded code %v times on its request path; want 0", v)
	}
	if v := a.metric(t, `wisp_gateway_registry_changes_total{outcome="current"}`); v < 1 {
		t.Fatalf("a saw its own deploy come back %v times; want it recognised as current", v)
	}

	// The other way round, with a route: deploy through b, served by a.
	if _, err := b.cli("deploy", "echo", buildtest.Dir("echo"), "--route", "/e"); err != nil {
		t.Fatalf("deploy through b: %v", err)
	}
	waitStatus(t, a.url+"/e/x", 200, 3*time.Minute)

	// Rollback through a reaches b; removal through b reaches a.
	if _, err := a.cli("deploy", "hello", buildtest.Dir("echo")); err != nil {
		t.Fatalf("second deploy of hello: %v", err)
	}
	waitBodyLag(t, b.url+"/hello/", func(body string) bool { return strings.Contains(body, `"method"`) })
	if _, err := a.cli("rollback", "hello"); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	lag = waitBodyLag(t, b.url+"/hello/", func(body string) bool { return body == "Hello WASM from Golang!" })
	t.Logf("b served the rollback %v after a acknowledged it (code compiled there before)", lag)
	out, err := b.cli("ls", "hello")
	if err != nil {
		t.Fatalf("ls hello: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[3], "3 ") || !strings.Contains(lines[3], "current, rollback to 1") {
		t.Fatalf("ls hello:\n%s\nwant a header and versions 1 to 3, 3 current and a rollback to 1", out)
	}
	if _, err := b.cli("rm", "hello"); err != nil {
		t.Fatalf("rm through b: %v", err)
	}
	waitStatus(t, a.url+"/hello/", 404, 30*time.Second)
	if v := a.metric(t, `wisp_gateway_registry_changes_total{outcome="removed"}`); v != 1 {
		t.Fatalf("a removed %v functions on the registry's word; want 1", v)
	}
	if status, _ := get(t, a.url+"/e/x"); status != 200 {
		t.Fatalf("echo after hello's removal: %d; want 200", status)
	}
}

// waitBodyLag polls url until it answers 200 with a body ok accepts, and returns how long
// that took.
func waitBodyLag(t *testing.T, url string, ok func(string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		status, body := get(t, url)
		if status == 200 && ok(body) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q; not the body wanted", url, status, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two regions, each a node with its own embedded NATS, joined by a leaf link: the edge reads
// the registry from its mirrors and sends writes to the home region, so a deploy through
// either region is served by both.
func TestRegionsHomeAndEdge(t *testing.T) {
	home := startWisp(t, t.TempDir(), "--region", "home", "--leaf-listen", "127.0.0.1:0")
	edge := startWisp(t, t.TempDir(), "--region", "edge-1", "--home-region", "home",
		"--leaf-remote", home.printed(t, "wisp: leaf listener on "))
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(wasm, buildtest.Wasm(t, "hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := home.cli("deploy", "hello", wasm); err != nil {
		t.Fatalf("deploy through home: %v", err)
	}
	t.Logf("edge served hello %v after home acknowledged its deploy", waitStatus(t, edge.url+"/hello/", 200, 3*time.Minute))
	if _, err := edge.cli("deploy", "hi", wasm, "--route", "/hi"); err != nil {
		t.Fatalf("deploy through the edge: %v", err)
	}
	t.Logf("home served hi %v after the edge acknowledged its deploy", waitStatus(t, home.url+"/hi/", 200, 3*time.Minute))
	if _, err := edge.cli("rm", "hello"); err != nil {
		t.Fatalf("rm through the edge: %v", err)
	}
	waitStatus(t, home.url+"/hello/", 404, 30*time.Second)
	waitStatus(t, edge.url+"/hello/", 404, 30*time.Second)
}

func TestServeRefusesBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad name", []string{"--region", "Bad_Name"}, "invalid region"},
		{"edge without leaf remote", []string{"--region", "eu", "--home-region", "us"}, "leaf-node URL"},
		{"leaf listener without region", []string{"--leaf-listen", "127.0.0.1:0"}, "own region"},
		{"leaf remote on home", []string{"--region", "us", "--leaf-remote", "127.0.0.1:7422"}, "no leaf remotes"},
		{"bad leaf remote", []string{"--region", "eu", "--home-region", "us", "--leaf-remote", "nats-leaf://nowhere"}, "invalid leaf remote"},
		{"bad pprof address", []string{"--pprof-listen", "nowhere"}, "--pprof-listen"},
		{"negative staged memory", []string{"--staged-memory-mib", "-1"}, "--staged-memory-mib"},
		{"playground TTL too short", []string{"--playground", "--playground-ttl", "0s"}, "--playground-ttl"},
		{"playground TTL too long", []string{"--playground", "--playground-ttl", "721h"}, "--playground-ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", t.TempDir()}, tt.args...)
			out, err := exec.Command(wispBin, args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("wisp serve %v: %v\n%s\nwant a failure that mentions %q", tt.args, err, out, tt.want)
			}
		})
	}
}

// TestServeUsesTwoProcsOnOneCPU pins wisp serve to one CPU: it runs with two Ps unless
// GOMAXPROCS says otherwise (see atLeastTwoProcs).
func TestServeUsesTwoProcsOnOneCPU(t *testing.T) {
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		t.Skip("no taskset to pin the server with")
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	for _, tt := range []struct {
		env  []string
		want float64
	}{{nil, 2}, {[]string{"GOMAXPROCS=1"}, 1}} {
		p := startWispWith(t, []string{taskset, "-c", "0"}, append(env[:len(env):len(env)], tt.env...), t.TempDir())
		if got := p.metric(t, "go_gomaxprocs"); got != tt.want {
			t.Errorf("pinned to one CPU with %v: GOMAXPROCS %v; want %v", tt.env, got, tt.want)
		}
	}
}
