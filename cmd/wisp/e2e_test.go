package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// wispBin is the real binary, built once for this test run.
var wispBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wisp-e2e-")
	if err != nil {
		panic(err)
	}
	wispBin = filepath.Join(dir, "wisp")
	out, err := exec.Command("go", "build", "-o", wispBin, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running `wisp serve`; its output is printed only if the test fails.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

const e2eToken = "e2e-token"

func startWisp(t *testing.T, data string, extra ...string) *process {
	t.Helper()
	return startWispWith(t, nil, os.Environ(), data, extra...)
}

// startWispWith is startWisp with the command run through wrap (such as taskset) and the
// environment env (plus the admin token).
func startWispWith(t *testing.T, wrap, env []string, data string, extra ...string) *process {
	t.Helper()
	p := &process{t: t, done: make(chan struct{})}
	argv := append(append(wrap[:len(wrap):len(wrap)], wispBin, "serve", "--listen", "127.0.0.1:0", "--data", data), extra...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(env, "WISP_TOKEN="+e2eToken)
	p.cmd.Stderr = p
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.Write([]byte(line + "\n"))
			if u, ok := strings.CutPrefix(line, "wisp: serving on "); ok {
				urls <- u
			}
		}
	}()
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("wisp serve output:\n%s", p.logs.String())
			p.mu.Unlock()
		}
	})
	select {
	case p.url = <-urls:
	case <-p.done:
		t.Fatal("wisp serve exited before serving")
	case <-time.After(30 * time.Second):
		t.Fatal("wisp serve did not print its URL")
	}
	return p
}

func (p *process) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cli runs a wisp client command against p and returns its stdout.
func (p *process) cli(args ...string) (string, error) {
	cmd := exec.Command(wispBin, append(args[:1:1], append([]string{"--addr", p.url}, args[1:]...)...)...)
	cmd.Env = append(os.Environ(), "WISP_TOKEN="+e2eToken)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), &cliError{err: err, stderr: errb.String()}
	}
	return out.String(), nil
}

type cliError struct {
	err    error
	stderr string
}

func (e *cliError) Error() string { return e.err.Error() + ": " + e.stderr }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBuildDeployInvokeAndSurviveKill(t *testing.T) {
	// A function directory that is only main.go, away from this repository.
	fnDir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(buildtest.Dir("hello"), "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fnDir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	if out, err := exec.Command(wispBin, "build", fnDir, "-o", wasm).CombinedOutput(); err != nil {
		t.Fatalf("wisp build: %v\n%s", err, out)
	}

	data := t.TempDir()
	p := startWisp(t, data)
	out, err := p.cli("deploy", "hello", wasm)
	if err != nil || !strings.Contains(out, "/hello/") {
		t.Fatalf("deploy: %q %v", out, err)
	}
	if _, err := p.cli("deploy", "echo", buildtest.Dir("echo"), "--route", "/e", "--env", "A=1"); err != nil {
		t.Fatalf("deploy from a directory: %v", err)
	}
	if status, body := get(t, p.url+"/hello/"); status != 200 || body != "Hello WASM from Golang!" {
		t.Fatalf("GET /hello/: %d %q", status, body)
	}
	out, err = p.cli("invoke", "echo", "--path", "/x?env=A", "--data", "abc")
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	var echo struct {
		Method string            `json:"method"`
		Path   string            `json:"path"`
		Body   int               `json:"body_length"`
		Env    map[string]string `json:"env"`
	}
	if err := json.Unmarshal([]byte(out), &echo); err != nil || echo.Method != "POST" || echo.Path != "/x" || echo.Body != 3 || echo.Env["A"] != "1" {
		t.Fatalf("invoke echo = %q (%v); want POST /x, 3 body bytes, A=1", out, err)
	}
	out, err = p.cli("ls")
	if err != nil || !strings.Contains(out, "hello") || !strings.Contains(out, "/e") {
		t.Fatalf("ls: %q %v", out, err)
	}
	if _, err := p.cli("deploy", "bad", filepath.Join(fnDir, "main.go")); err == nil || !strings.Contains(err.Error(), "not a wasm module") {
		t.Fatalf("deploying Go source: err = %v; want 'not a wasm module'", err)
	}
	if _, err := p.cli("rm", "echo"); err != nil {
		t.Fatalf("rm: %v", err)
	}
	if _, err := p.cli("rm", "echo"); err == nil {
		t.Fatal("second rm succeeded; want an error")
	}

	// The deploy was acknowledged: it must survive kill -9.
	p.stop(syscall.SIGKILL)
	p2 := startWisp(t, data)
	if status, body := get(t, p2.url+"/hello/"); status != 200 || body != "Hello WASM from Golang!" {
		t.Fatalf("after kill -9 and restart: %d %q", status, body)
	}
	if status, _ := get(t, p2.url+"/e/x"); status != 404 {
		t.Fatalf("removed function after restart: %d; want 404", status)
	}
}

func TestCLIErrors(t *testing.T) {
	p := startWisp(t, t.TempDir())
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"deploy", "x", "/does/not/exist.wasm"}, "no such file"},
		{"bad name", []string{"deploy", "Bad_Name", wispBin}, "name"},
		{"unknown function", []string{"invoke", "nope"}, "404"},
		{"rm unknown", []string{"rm", "nope"}, "not found"},
		{"versions of unknown", []string{"ls", "nope"}, "not found"},
		{"versions of a bad name", []string{"ls", "Bad_Name"}, "name"},
		{"bad fetch allow", []string{"deploy", "x", wispBin, "--fetch-allow", "http://x"}, "fetch_allow"},
		{"ttl too short", []string{"deploy", "x", wispBin, "--ttl", "100ms"}, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.cli(tt.args...)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), tt.want) {
				t.Fatalf("err = %v; want it to mention %q", err, tt.want)
			}
		})
	}
	cmd := exec.CommandContext(context.Background(), wispBin, "ls", "--addr", p.url, "--token-file", "/nonexistent")
	cmd.Env = append(os.Environ(), "WISP_TOKEN=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "WISP_TOKEN") {
		t.Fatalf("ls without a token: %q %v", out, err)
	}
	cmd = exec.Command(wispBin, "ls", "--addr", p.url)
	cmd.Env = append(os.Environ(), "WISP_TOKEN=wrong")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("ls with a wrong token: %q %v", out, err)
	}
}

func TestLoadtestCold(t *testing.T) {
	p := startWisp(t, t.TempDir())
	out, err := p.cli("loadtest", "cold", "--functions", "6", "--rate", "50", "--busy-poll", "--json")
	if err != nil {
		t.Fatalf("loadtest cold: %v", err)
	}
	var res struct {
		Config struct {
			BusyPoll bool `json:"busy_poll"`
		} `json:"config"`
		Count   int64   `json:"count"`
		ColdP50 float64 `json:"cold_p50_us"`
		WarmP99 float64 `json:"warm_p99_us"`
		Errors  int64   `json:"errors"`
		Server  struct {
			Cold int64 `json:"cold_starts"`
			Hot  int64 `json:"hot_starts"`
		} `json:"server"`
		ServerWarm struct {
			Cold int64 `json:"cold_starts"`
			Hot  int64 `json:"hot_starts"`
		} `json:"server_warm"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if res.Count != 6 || res.Errors != 0 || res.ColdP50 <= 0 || res.WarmP99 <= 0 || !res.Config.BusyPoll {
		t.Fatalf("result %+v; want 6 requests, no errors, positive latencies, busy poll", res)
	}
	if res.Server.Cold != 6 || res.Server.Hot != 0 || res.ServerWarm.Cold != 0 || res.ServerWarm.Hot != 6 {
		t.Fatalf("server saw %+v starts in the cold phase and %+v in the warm one; want 6 cold, then 6 hot", res.Server, res.ServerWarm)
	}
	out, err = p.cli("ls", "--json")
	if err != nil || strings.Contains(out, "cold-") {
		t.Fatalf("functions left after the run: %q %v", out, err)
	}
	if _, err := p.cli("loadtest", "cold", "--functions", "-1"); err == nil || !strings.Contains(err.Error(), "functions") {
		t.Fatalf("--functions -1: err = %v; want it refused", err)
	}
}

func TestHostcallsFetchKVAndLogs(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	defer target.Close()
	p := startWisp(t, t.TempDir(), "--fetch-allow-loopback")
	if _, err := p.cli("deploy", "fc", buildtest.Dir("fetchcount")); err != nil {
		t.Fatalf("deploy fetchcount: %v", err)
	}
	type answer struct {
		Visits  int `json:"visits"`
		Results []struct {
			Status int    `json:"status"`
			Bytes  int    `json:"bytes"`
			Error  string `json:"error"`
		} `json:"results"`
	}
	for want := 1; want <= 2; want++ {
		status, body := get(t, p.url+"/fc/?url="+target.URL+"/a&url="+target.URL+"/bb")
		var a answer
		if err := json.Unmarshal([]byte(body), &a); status != 200 || err != nil {
			t.Fatalf("GET /fc/: %d %q (%v)", status, body, err)
		}
		if a.Visits != want || len(a.Results) != 2 || a.Results[0].Status != 200 || a.Results[1].Bytes != len("page /bb") {
			t.Fatalf("answer %+v; want visit %d and two fetched pages", a, want)
		}
	}
	// A function limited to other hosts cannot fetch the target; one that names it can.
	if _, err := p.cli("deploy", "fc", buildtest.Dir("fetchcount"), "--fetch-allow", "example.com", "--fetch-allow", "*.example.com:443"); err != nil {
		t.Fatalf("deploy fetchcount with an allow-list: %v", err)
	}
	status, body := get(t, p.url+"/fc/?url="+target.URL+"/a")
	if status != 200 || !strings.Contains(body, "allow-list") {
		t.Fatalf("fetch outside the allow-list: %d %q; want the guest to report the refusal", status, body)
	}
	if _, err := p.cli("deploy", "fc", buildtest.Dir("fetchcount"), "--fetch-allow", "127.0.0.1"); err != nil {
		t.Fatalf("deploy fetchcount allowing the target: %v", err)
	}
	status, body = get(t, p.url+"/fc/?url="+target.URL+"/a")
	if status != 200 || !strings.Contains(body, `"status":200`) {
		t.Fatalf("fetch on the allow-list: %d %q", status, body)
	}
	// Two functions of one tenant share a KV namespace, so they count the same visits; fc,
	// in its own namespace, counted two.
	for i, name := range []string{"t1", "t2"} {
		if _, err := p.cli("deploy", name, buildtest.Dir("fetchcount"), "--kv-namespace", "tenant-a"); err != nil {
			t.Fatalf("deploy %s: %v", name, err)
		}
		var a answer
		status, body := get(t, p.url+"/"+name+"/?url="+target.URL+"/a")
		if err := json.Unmarshal([]byte(body), &a); status != 200 || err != nil || a.Visits != i+1 {
			t.Fatalf("GET /%s/: %d %q; want visit %d of the tenant's namespace", name, status, body, i+1)
		}
	}
	out, err := p.cli("logs", "fc")
	if err != nil || !strings.Contains(out, "fetched") {
		t.Fatalf("logs: %q %v; want the guest's 'fetched' line", out, err)
	}
	if _, err := p.cli("logs", "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("logs of an unknown function: %v", err)
	}
}
