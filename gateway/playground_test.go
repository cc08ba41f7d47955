package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/gateway"
	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/sched"
	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// startPlayground is a gateway whose playground builds with build.
func startPlayground(t *testing.T, pg gateway.Playground) *testServer {
	t.Helper()
	return startServer(t, t.TempDir(), 0, func(c *gateway.Config) { c.Playground = &pg })
}

type played struct {
	Name    string    `json:"name"`
	Version uint64    `json:"version"`
	Path    string    `json:"path"`
	Key     string    `json:"key"`
	Expires time.Time `json:"expires"`
}

func (s *testServer) play(method, path, lang, source string, hdr map[string]string) (response, played) {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"lang": lang, "source": source})
	r := s.do(method, "/_wisp/playground"+path, body, hdr)
	var p played
	if r.status < 300 {
		if err := json.Unmarshal(r.body, &p); err != nil {
			s.t.Fatalf("%s %s: %d %q is not JSON", method, path, r.status, r.body)
		}
	}
	return r, p
}

// The playground builds what it is given, deploys it under a fresh name and key, and keeps
// within its bounds: functions alive, builds queued, the TTL.
func TestPlayground(t *testing.T) {
	hello := buildtest.Wasm(t, "hello")
	echo := buildtest.Wasm(t, "echo")
	var mu sync.Mutex
	var built []string
	s := startPlayground(t, gateway.Playground{
		MaxFunctions: 2,
		TTL:          8 * time.Second, // long enough for the steps before the redeploy on a slow machine
		Build: func(_ context.Context, lang string, src []byte) ([]byte, error) {
			mu.Lock()
			built = append(built, lang+":"+string(src))
			mu.Unlock()
			switch string(src) {
			case "hello":
				return hello, nil
			case "echo":
				return echo, nil
			case "broken":
				return nil, fmt.Errorf("%w:\nmain.go:3:1: syntax error", gateway.ErrBuild)
			}
			return nil, errors.New("no go tool")
		},
	})

	if r := s.do("GET", "/_wisp/playground/", nil, nil); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.body), "Wisp playground") {
		t.Fatalf("GET /_wisp/playground/: %d %v", r.status, r.header)
	}

	// Malformed deploys: nothing is built.
	for _, c := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"not JSON", "lang=go", 400, "must be JSON"},
		{"unknown language", `{"lang":"py","source":"x"}`, 400, `lang "py"`},
		{"no language", `{"source":"x"}`, 400, `lang ""`},
		{"empty source", `{"lang":"go","source":"  \n"}`, 400, "empty"},
		{"oversized source", `{"lang":"go","source":"` + strings.Repeat("x", 300<<10) + `"}`, 413, "exceeds"},
	} {
		r := s.do("POST", "/_wisp/playground/functions", []byte(c.body), nil)
		if r.status != c.status || !strings.Contains(r.json(t)["error"].(string), c.msg) {
			t.Errorf("%s: %d %s; want %d with %q", c.name, r.status, r.body, c.status, c.msg)
		}
	}
	mu.Lock()
	if len(built) != 0 {
		t.Fatalf("malformed deploys were built: %q", built)
	}
	mu.Unlock()
	if r, _ := s.play("POST", "/functions", "go", "broken", nil); r.status != 422 || !strings.Contains(string(r.body), "main.go:3:1: syntax error") {
		t.Errorf("a build error: %d %s; want 422 with the compiler's message", r.status, r.body)
	}
	if r, _ := s.play("POST", "/functions", "go", "node fault", nil); r.status != 503 {
		t.Errorf("a builder that cannot build: %d %s; want 503", r.status, r.body)
	}

	r, f := s.play("POST", "/functions", "go", "hello", nil)
	if r.status != 201 || !strings.HasPrefix(f.Name, "play-") || len(f.Key) != 32 || f.Path != "/"+f.Name+"/" || f.Version != 1 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if until := time.Until(f.Expires); until < time.Second || until > 8*time.Second {
		t.Errorf("expires in %v; want the TTL of 8s", until)
	}
	if r := s.do("GET", f.Path, nil, nil); r.status != 200 || string(r.body) != "Hello WASM from Golang!" {
		t.Fatalf("GET %s: %d %q", f.Path, r.status, r.body)
	}
	// The admin API sees it as the playground tenant's, with its expiry.
	if m := s.do("GET", "/_wisp/functions/"+f.Name, nil, auth).json(t); m["tenant"] != "playground" || m["expires"] == nil {
		t.Errorf("admin view: %v", m)
	}

	// Without its key, a function cannot be changed, deleted or followed: always the same 404.
	key := map[string]string{"X-Wisp-Playground-Key": f.Key}
	for _, hdr := range []map[string]string{nil, {"X-Wisp-Playground-Key": strings.Repeat("0", 32)}} {
		if r, _ := s.play("PUT", "/functions/"+f.Name, "go", "echo", hdr); r.status != 404 {
			t.Errorf("PUT without the key (%v): %d", hdr, r.status)
		}
		if r := s.do("DELETE", "/_wisp/playground/functions/"+f.Name, nil, hdr); r.status != 404 {
			t.Errorf("DELETE without the key (%v): %d", hdr, r.status)
		}
		if r := s.do("GET", "/_wisp/playground/functions/"+f.Name+"/logs", nil, hdr); r.status != 404 {
			t.Errorf("logs without the key (%v): %d", hdr, r.status)
		}
	}
	// Nor can a key reach a function the playground did not deploy.
	s.mustDeploy("mine", "hello", "")
	if r, _ := s.play("PUT", "/functions/mine", "go", "echo", key); r.status != 404 {
		t.Errorf("PUT over an admin-deployed function: %d", r.status)
	}

	// A redeploy with the key: a new version at the same URL, its expiry renewed.
	time.Sleep(time.Second)
	r, f2 := s.play("PUT", "/functions/"+f.Name, "go", "echo", key)
	if r.status != 200 || f2.Name != f.Name || f2.Version != 2 || f2.Key != "" || !f2.Expires.After(f.Expires) {
		t.Fatalf("redeploy: %d %s", r.status, r.body)
	}
	if r := s.do("GET", f.Path+"x", nil, nil); r.status != 200 || !strings.Contains(string(r.body), "/x") {
		t.Fatalf("GET after redeploy: %d %q; want echo's answer", r.status, r.body)
	}

	// Two alive is the bound: the third waits for one to go.
	if r, _ := s.play("POST", "/functions", "go", "hello", nil); r.status != 201 {
		t.Fatalf("second function: %d %s", r.status, r.body)
	}
	if r, _ := s.play("POST", "/functions", "go", "hello", nil); r.status != 429 {
		t.Fatalf("third function: %d %s; want 429", r.status, r.body)
	}
	if r := s.do("DELETE", "/_wisp/playground/functions/"+f.Name, nil, key); r.status != 204 {
		t.Fatalf("DELETE with the key: %d %s", r.status, r.body)
	}
	if r := s.do("GET", f.Path, nil, nil); r.status != 404 {
		t.Fatalf("GET after delete: %d", r.status)
	}

	// The TTL: the second function goes by itself.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, fn := range s.do("GET", "/_wisp/functions", nil, auth).json(t)["functions"].([]any) {
			if fn.(map[string]any)["tenant"] == "playground" {
				n++
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d playground functions left past their TTL", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := s.do("GET", "/mine/", nil, nil); r.status != 200 {
		t.Errorf("a function without TTL went too: %d", r.status)
	}
}

// Builds run one at a time and at most a few wait: the rest are refused at once.
func TestPlaygroundBuildQueue(t *testing.T) {
	hello := buildtest.Wasm(t, "hello")
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	s := startPlayground(t, gateway.Playground{MaxFunctions: 16, Build: func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-release:
			return hello, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}})
	const admitted = 5 // one building, four waiting
	statuses := make(chan int, admitted)
	for range admitted {
		go func() {
			r, _ := s.play("POST", "/functions", "js", "x", nil)
			statuses <- r.status
		}()
	}
	<-started
	// The admitted requests reach the queue after the first build started; wait until all do.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := s.play("POST", "/functions", "js", "x", nil)
		if r.status == http.StatusTooManyRequests {
			if r.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue never filled: %d %s", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	for range admitted {
		if st := <-statuses; st != 201 {
			t.Errorf("an admitted deploy: %d", st)
		}
	}
	if len(started) != admitted-1 { // the first was taken above
		t.Errorf("%d builds started; want %d, one at a time", len(started)+1, admitted)
	}
}

// A deploy with a TTL goes away by itself; a malformed TTL is refused.
func TestDeployTTL(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	wasm := buildtest.Wasm(t, "hello")
	for _, ttl := range []string{"x", "0s", "500ms", "-1m", "721h"} {
		if r := s.deploy("temp", wasm, "ttl="+ttl); r.status != 400 || !strings.Contains(string(r.body), "ttl") {
			t.Errorf("ttl=%s: %d %s; want 400", ttl, r.status, r.body)
		}
	}
	if r := s.deploy("temp", wasm, "ttl=5s"); r.status != 201 {
		t.Fatalf("deploy with ttl=5s: %d %s", r.status, r.body)
	}
	s.mustDeploy("stays", "hello", "")
	if r := s.do("GET", "/temp/", nil, nil); r.status != 200 {
		t.Fatalf("GET /temp/ before its expiry: %d", r.status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.do("GET", "/temp/", nil, nil).status != 404 {
		if time.Now().After(deadline) {
			t.Fatal("a function with ttl=5s still answers after 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := s.do("GET", "/_wisp/functions/temp", nil, auth); r.status != 404 {
		t.Errorf("the registry still has the expired function: %d", r.status)
	}
	if r := s.do("GET", "/stays/", nil, nil); r.status != 200 {
		t.Errorf("a function without TTL: %d", r.status)
	}
}

// A node outside the pool that runs the playground's tenant refuses its deploys: the function
// would run where the deploy is made.
func TestPlaygroundOutsideItsPool(t *testing.T) {
	node, err := natsnode.Start(context.Background(), natsnode.Options{Dir: t.TempDir() + "/jetstream"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	built := false
	s := startServerOn(t, node, 0, func(cfg *gateway.Config) {
		sc, err := sched.New(sched.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sc.Close)
		cfg.Cluster = &gateway.Cluster{Self: "http://" + cfg.Listener.Addr().String(), Pool: "gateway", Sched: sc}
		cfg.Playground = &gateway.Playground{Build: func(context.Context, string, []byte) ([]byte, error) {
			built = true
			return nil, errors.New("not here")
		}}
	})
	r, _ := s.play("POST", "/functions", "go", "hello", nil)
	if r.status != http.StatusMisdirectedRequest || !strings.Contains(string(r.body), `pool \"shared\"`) || built {
		t.Fatalf("deploy on a node outside the playground's pool: %d %s (built: %v)", r.status, r.body, built)
	}
}
