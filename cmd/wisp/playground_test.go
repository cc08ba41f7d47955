package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

const playGo = `package main

import (
	"fmt"

	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/http"
)

func main() { faas.Start(handler) }

func handler(req *http.Request) *http.Response {
	fmt.Println("played", req.Method, req.URL.Path)
	return &http.Response{StatusCode: 200, Body: http.MustNewBody([]byte("VERSION " + req.URL.Query().Get("n")))}
}
`

const playJS = `run(async (request) => {
  console.log("played js", new URL(request.url).pathname);
  return new Response("hello from js");
});
`

// playDeploy posts source to the playground of p: a new function (name "") or a redeploy.
func playDeploy(t *testing.T, p *process, name, key, lang, source string) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"lang": lang, "source": source})
	method, url := "POST", p.url+"/_wisp/playground/functions"
	if name != "" {
		method, url = "PUT", url+"/"+name
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("X-Wisp-Playground-Key", key)
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, m
}

// The playground of `wisp serve --playground` builds Go and JavaScript sources with the go tool,
// serves them at their temporary URL, and streams what they print to the page's log.
func TestPlaygroundBuildsAndFollows(t *testing.T) {
	p := startWisp(t, t.TempDir(), "--playground")
	if !p.waitLog("wisp: playground at " + p.url + "/_wisp/playground/") {
		t.Error("serve did not print the playground's URL")
	}
	if status, body := get(t, p.url+"/_wisp/playground/"); status != 200 || !strings.Contains(body, "<title>Wisp playground</title>") {
		t.Fatalf("the page: %d", status)
	}

	// A compile error: 422 with the compiler's message, naming the user's file only.
	status, m := playDeploy(t, p, "", "", "go", "package main\n\nfunc main() { nope() }\n")
	if msg, _ := m["error"].(string); status != 422 || !strings.Contains(msg, "main.go:3:15: undefined: nope") || strings.Contains(msg, "wisp-playground-") {
		t.Fatalf("a Go compile error: %d %v", status, m)
	}
	status, m = playDeploy(t, p, "", "", "js", "run(async () => {\n  return new Response('x'\n});\n")
	if msg, _ := m["error"].(string); status != 422 || !strings.Contains(msg, "SyntaxError") {
		t.Fatalf("a JavaScript syntax error: %d %v", status, m)
	}

	status, m = playDeploy(t, p, "", "", "go", playGo)
	if status != 201 {
		t.Fatalf("Go deploy: %d %v", status, m)
	}
	name, key, path := m["name"].(string), m["key"].(string), m["path"].(string)
	t.Logf("Go: built in %v ms, deployed in %v ms", m["build_ms"], m["took_ms"])

	// The log streams live: what the function prints reaches the follower while it follows.
	req, _ := http.NewRequest("GET", p.url+"/_wisp/playground/functions/"+name+"/logs", nil)
	req.Header.Set("X-Wisp-Playground-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("follow the log: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if status, body := get(t, p.url+path+"live?n=1"); status != 200 || body != "VERSION 1" {
		t.Fatalf("GET %slive: %d %q", path, status, body)
	}
	waitLine := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the log stream ended before %q", want)
				}
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no log line %q within 10 s", want)
			}
		}
	}
	waitLine("stdout INFO  played GET /live")

	// A redeploy in the other language keeps the URL; the follower sees the new version's lines.
	status, m = playDeploy(t, p, name, key, "js", playJS)
	if status != 200 || m["version"].(float64) != 2 {
		t.Fatalf("JavaScript redeploy: %d %v", status, m)
	}
	t.Logf("JavaScript: built in %v ms, deployed in %v ms", m["build_ms"], m["took_ms"])
	if status, body := get(t, p.url+path+"js"); status != 200 || body != "hello from js" {
		t.Fatalf("GET %sjs: %d %q", path, status, body)
	}
	waitLine("played js /js")

	if status, _ := playDeploy(t, p, name, "wrong", "go", playGo); status != 404 {
		t.Errorf("redeploy with a wrong key: %d", status)
	}
}
