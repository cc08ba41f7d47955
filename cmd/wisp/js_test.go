package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// send makes one request and returns the response with its body read.
func send(t *testing.T, method, url, contentType, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("X-Trace", "abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// waitLog reports whether a line of p's log holds all of parts, waiting a while for it: the log
// arrives through a pipe, maybe after the response it explains.
func (p *process) waitLog(parts ...string) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		p.mu.Lock()
		logs := p.logs.String()
		p.mu.Unlock()
		if hasLine(logs, parts...) {
			return true
		}
	}
	return false
}

// hasLine reports whether a line of text holds all of parts.
func hasLine(text string, parts ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		found := true
		for _, part := range parts {
			found = found && strings.Contains(line, part)
		}
		if found {
			return true
		}
	}
	return false
}

func TestJavaScriptFunctions(t *testing.T) {
	// wisp build, then deploy of the module; and deploy of a directory, which builds it first.
	wasm := filepath.Join(t.TempDir(), "js.wasm")
	if out, err := exec.Command(wispBin, "build", buildtest.Dir("jshello"), "-o", wasm).CombinedOutput(); err != nil {
		t.Fatalf("wisp build: %v\n%s", err, out)
	}
	p := startWisp(t, t.TempDir())
	if out, err := p.cli("deploy", "jshello", wasm); err != nil || !strings.Contains(out, "/jshello/") {
		t.Fatalf("deploy jshello: %q %v", out, err)
	}
	if _, err := p.cli("deploy", "jsecho", buildtest.Dir("jsecho")); err != nil {
		t.Fatalf("deploy jsecho from its directory: %v", err)
	}

	resp, body := send(t, "GET", p.url+"/jshello/a/b?x=1", "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" || body != "Hello WASM from JavaScript! GET /a/b" {
		t.Fatalf("GET /jshello/a/b: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	resp, body = send(t, "POST", p.url+"/jsecho/items?a=1&b=x+y", "application/json", `{"n":[1,2],"s":"é"}`)
	var echo struct {
		Method, Path string
		Query        map[string]string
		Headers      map[string]string
		Body         struct {
			N []int
			S string
		}
	}
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatalf("POST /jsecho/items: %d %v in %q", resp.StatusCode, err, body)
	}
	if resp.StatusCode != 201 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Echo") != "1" ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("POST /jsecho/items: %d %v", resp.StatusCode, resp.Header)
	}
	if echo.Method != "POST" || echo.Path != "/items" || echo.Query["a"] != "1" || echo.Query["b"] != "x y" ||
		echo.Headers["x-trace"] != "abc" || echo.Headers["content-type"] != "application/json" ||
		len(echo.Body.N) != 2 || echo.Body.S != "é" {
		t.Errorf("POST /jsecho/items: wrong echo %s", body)
	}

	resp, body = send(t, "GET", p.url+"/jsecho/status?code=418", "", "")
	if resp.StatusCode != 418 || resp.Header.Get("X-Echo-Status") != "418" || body != "status 418\n" {
		t.Errorf("GET /jsecho/status?code=418: %d %v %q", resp.StatusCode, resp.Header, body)
	}

	// An exception or a rejected promise: a 500 with an error id, under which the server logs the
	// JavaScript error; the next request gets a fresh instance.
	for path, want := range map[string]string{
		"/throw":  "jsecho: /throw asked for an exception",
		"/reject": "jsecho: /reject asked for a rejected promise",
	} {
		resp, body := send(t, "GET", p.url+"/jsecho"+path, "", "")
		var e struct {
			Error   string `json:"error"`
			ErrorID string `json:"error_id"`
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != 500 || e.ErrorID == "" {
			t.Errorf("GET /jsecho%s: %d %q; want a 500 with an error id", path, resp.StatusCode, body)
			continue
		}
		if !p.waitLog(e.ErrorID, want) {
			t.Errorf("GET /jsecho%s: no log line with error id %s and %q", path, e.ErrorID, want)
		}
		// The function's own log stream has the fault under the same id.
		if out, err := p.cli("logs", "jsecho"); err != nil || !strings.Contains(out, " host ERROR ") || !strings.Contains(out, "error_id="+e.ErrorID) {
			t.Errorf("wisp logs jsecho after GET /jsecho%s: %v\n%s", path, err, out)
		}
	}
	if resp, _ := send(t, "GET", p.url+"/jsecho/", "", ""); resp.StatusCode != 200 {
		t.Errorf("GET /jsecho/ after failures: %d", resp.StatusCode)
	}

	// A script with a syntax error fails at build time, with the line and column.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "index.js"), []byte("run(async () => {\n  return new Response('x'\n});\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.cli("deploy", "bad", bad); err == nil || !strings.Contains(err.Error(), "SyntaxError") || !strings.Contains(err.Error(), "Line 3:1") {
		t.Errorf("deploy of a script with a syntax error: %v", err)
	}
	if status, _ := get(t, p.url+"/bad/"); status != 404 {
		t.Errorf("GET /bad/: %d; want 404", status)
	}
}
