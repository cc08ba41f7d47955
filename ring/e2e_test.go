package ring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/ring"
	ringfetch "github.com/wispfn/wisp/ring/provider/fetch"
	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// barrier answers no request until n have arrived at once: a test that passes through it proves
// that n fetches were in flight together, without timing anything. A request still waiting after
// 10 s (a failing test) gets a 504.
func barrier(n int) *httptest.Server {
	all := make(chan struct{})
	var mu sync.Mutex
	arrived := 0
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if arrived++; arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			fmt.Fprint(w, "hello from "+r.URL.Path)
		case <-time.After(10 * time.Second):
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	}))
}

func TestFetchcount(t *testing.T) {
	n := newNode(t, nodeConfig{fetch: ringfetch.Config{AllowLoopback: true}})
	f := n.deploy("fetchcount", buildtest.Wasm(t, "fetchcount"), ring.FunctionConfig{
		Namespace: fmt.Sprintf("fetchcount-%d", time.Now().UnixNano()), // a fresh count on every run
		Fetch:     ring.FetchPolicy{Allow: []string{"127.0.0.1"}},
	})
	lines, cancel := n.logs.Subscribe("fetchcount")
	defer cancel()
	in := n.instantiate(f)
	defer in.close()
	for visit := 1; visit <= 2; visit++ {
		srv := barrier(2) // both fetches must be in flight at once
		r := in.call("/?url=" + srv.URL + "/a&url=" + srv.URL + "/b")
		srv.Close()
		var ans struct {
			Visits  int `json:"visits"`
			Results []struct {
				URL    string `json:"url"`
				Status int    `json:"status"`
				Bytes  int    `json:"bytes"`
				Error  string `json:"error"`
			} `json:"results"`
		}
		if err := json.Unmarshal([]byte(r.body), &ans); err != nil || r.status != 200 {
			t.Fatalf("visit %d: %d %s (%v)", visit, r.status, r.body, err)
		}
		if ans.Visits != visit || len(ans.Results) != 2 || ans.Results[0].Status != 200 || ans.Results[1].Status != 200 ||
			ans.Results[0].Bytes != len("hello from /a") {
			t.Fatalf("visit %d: %s", visit, r.body)
		}
		select {
		case l := <-lines:
			if l.Message != "fetched" || l.Function != "fetchcount" || fmt.Sprint(l.Fields) != fmt.Sprintf("[{urls 2} {visits %d}]", visit) {
				t.Errorf("log line %+v", l)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no log line")
		}
	}
	// Off the allow-list, the guest gets the error in its answer.
	r := in.call("/?url=http://localhost:1/")
	if !strings.Contains(r.body, "denied") || !strings.Contains(r.body, "allow-list") {
		t.Errorf("fetch off the allow-list: %s", r.body)
	}
}

func TestSixteenConcurrentFetches(t *testing.T) {
	srv := barrier(16)
	defer srv.Close()
	n := newNode(t, nodeConfig{fetch: ringfetch.Config{AllowLoopback: true}})
	in := n.instantiate(n.deploy("guest", testGuest(t), ring.FunctionConfig{}))
	defer in.close()
	r := in.call("/fetch?n=16&url=" + srv.URL + "/x")
	if got := strings.Count(r.body, "200 hello from /x"); got != 16 {
		t.Fatalf("%d of 16 fetches succeeded:\n%s", got, r.body)
	}
}

func TestLogStream(t *testing.T) {
	n := newNode(t, nodeConfig{})
	in := n.instantiate(n.deploy("guest", testGuest(t), ring.FunctionConfig{}))
	defer in.close()
	lines, cancel := n.logs.Subscribe("guest")
	defer cancel()
	if r := in.call("/log?n=50"); r.body != "logged" {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	// Log waited for the last line, which comes after the 50 detached ones: all are in.
	for i := range 51 {
		l := <-lines
		want := "line"
		if i == 50 {
			want = "last"
		}
		if l.Message != want || (i < 50 && l.Fields[0].Value != strconv.Itoa(i)) {
			t.Fatalf("line %d = %+v", i, l)
		}
	}
}

func TestRPC(t *testing.T) {
	n := newNode(t, nodeConfig{})
	g := testGuest(t)
	n.deploy("callee", g, ring.FunctionConfig{})
	caller := n.instantiate(n.deploy("caller", g, ring.FunctionConfig{}))
	defer caller.close()
	if r := caller.call("/rpc?fn=callee&path=/echo%3Fa%3D1"); r.status != 200 || r.body != "POST /echo?a=1 from caller caller=caller" {
		t.Errorf("rpc: %d %q", r.status, r.body)
	}
	if r := caller.call("/rpc?fn=nobody&path=/"); r.status != 502 || !strings.Contains(r.body, "not found") {
		t.Errorf("rpc to a missing function: %d %q", r.status, r.body)
	}
}

// TestRPCDepth runs a function that calls itself: the chain stops at the depth limit, and each
// level answers with its depth, so the top answers the limit.
func TestRPCDepth(t *testing.T) {
	n := newNode(t, nodeConfig{})
	in := n.instantiate(n.deploy("loop", testGuest(t), ring.FunctionConfig{}))
	defer in.close()
	if r := in.call("/depth"); r.status != 200 || r.body != "9" {
		t.Errorf("self-calling function answered %d %q; want 9 (8 hops allowed, the ninth refused)", r.status, r.body)
	}
}

func TestBadInputFromGuest(t *testing.T) {
	n := newNode(t, nodeConfig{})
	in := n.instantiate(n.deploy("guest", testGuest(t), ring.FunctionConfig{}))
	defer in.close()
	r := in.call("/raw")
	want := []ring.Code{ring.CodeBadAddress, ring.CodeTooLarge, ring.CodeUnknownProvider, ring.CodeBadAddress,
		ring.CodeBadAddress, ring.CodeNothingPending, ring.CodeUnknownEvent, ring.CodeUnknownEvent}
	var got []string
	for _, c := range want {
		got = append(got, strconv.Itoa(-int(c)))
	}
	if r.body != strings.Join(got, ",") {
		t.Errorf("raw calls returned %s; want %s", r.body, strings.Join(got, ","))
	}
	// The instance is unharmed.
	if r := in.call("/kv?key=after-raw&put=ok"); r.body != "true ok" {
		t.Errorf("kv after bad calls: %q", r.body)
	}
}

// TestAbandonedCalls serves requests that start calls and never wait for them, some still at a
// slow server when the request ends. Nothing may leak: later requests still get their full
// in-flight quota, the guest's heap does not grow, and the provider goroutines finish.
func TestAbandonedCalls(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	n := newNode(t, nodeConfig{limits: ring.Limits{MaxInFlight: 16}, fetch: ringfetch.Config{AllowLoopback: true}})
	in := n.instantiate(n.deploy("guest", testGuest(t), ring.FunctionConfig{Namespace: "abandon"}))
	defer in.close()
	heap := func() int {
		v, _ := strconv.Atoi(in.call("/heap").body)
		return v
	}
	leak := func() {
		ctx, cancel := context.WithCancel(context.Background())
		r, err := in.serve(ctx, get("/leak?n=4&url="+slow.URL))
		cancel() // as the pool does when the request ends: abandoned fetches stop
		if err != nil || r.body != "left 4" {
			t.Fatalf("leak request: %v %q", err, r.body)
		}
	}
	in.call("/kv?key=warm-up")
	leak()
	before := heap()
	for range 200 {
		leak()
	}
	if after := heap(); after > before+256<<10 {
		t.Errorf("guest heap grew from %d to %d bytes over 200 requests", before, after)
	}
	// A burst as large as the in-flight limit still fits: nothing of the abandoned calls is held.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := in.call("/burst?n=16&key=nothing")
		if r.status == 200 && r.body == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("burst after abandoned calls: %d %q", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		stacks := goroutinesIn("/ring/provider/")
		if len(stacks) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d provider goroutines still running:\n%s", len(stacks), strings.Join(stacks, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutinesIn returns the stacks of the goroutines running code whose path contains path.
func goroutinesIn(path string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, path) {
			out = append(out, g)
		}
	}
	return out
}

// TestCompletionsPerWakeup starts bursts of KV gets from many instances at once and reads the
// ring's metrics: the guests were woken fewer times than they received completions.
func TestCompletionsPerWakeup(t *testing.T) {
	n := newNode(t, nodeConfig{})
	f := n.deploy("guest", testGuest(t), ring.FunctionConfig{Namespace: "burst"})
	const instances = 4
	ins := make([]*instance, instances)
	for i := range ins {
		ins[i] = n.instantiate(f)
		defer ins[i].close()
	}
	ins[0].call("/kv?key=b&put=1")
	w0, c0 := metricValue(t, "wisp_ring_wakeups_total"), metricValue(t, "wisp_ring_completions_total")
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if r, err := in.serve(context.Background(), get("/burst?n=32&key=b")); err != nil || r.body != "32" {
					t.Errorf("burst: %v %q", err, r.body)
					return
				}
			}
		}()
	}
	wg.Wait()
	wakeups, completions := metricValue(t, "wisp_ring_wakeups_total")-w0, metricValue(t, "wisp_ring_completions_total")-c0
	t.Logf("%v completions, %v wake-ups: %.1f per wake-up", completions, wakeups, completions/max(wakeups, 1))
	if completions != instances*20*32 || wakeups*4 > completions {
		t.Errorf("%v completions took %v wake-ups; want at least 4 completions per wake-up", completions, wakeups)
	}
}

func metricValue(t testing.TB, name string) float64 {
	t.Helper()
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
