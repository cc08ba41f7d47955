package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// TestJSFetchAndKV runs examples/jsfetchcount against the real host: two fetches of a slow
// server that overlap, the visit count in KV, and fetches that reject with a TypeError the
// script catches.
func TestJSFetchAndKV(t *testing.T) {
	const delay = 300 * time.Millisecond
	var (
		mu    sync.Mutex
		spans = map[string][2]time.Time{} // when the target served each request URI
	)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		mu.Lock()
		spans[r.URL.RequestURI()] = [2]time.Time{start, time.Now()}
		mu.Unlock()
		fmt.Fprintf(w, "page %s", r.URL.Path)
	}))
	defer target.Close()

	p := startWisp(t, t.TempDir(), "--fetch-allow-loopback")
	if _, err := p.cli("deploy", "jsfc", buildtest.Dir("jsfetchcount")); err != nil {
		t.Fatalf("deploy jsfetchcount: %v", err)
	}
	type result struct {
		URL    string `json:"url"`
		Status int    `json:"status"`
		Bytes  int    `json:"bytes"`
		Body   string `json:"body"`
		Error  string `json:"error"`
	}
	type answer struct {
		Visits    int      `json:"visits"`
		Previous  *string  `json:"previous"`
		ElapsedMS int64    `json:"elapsed_ms"`
		Results   []result `json:"results"`
	}
	call := func(urls ...string) answer {
		t.Helper()
		q := url.Values{"url": urls}
		status, body := get(t, p.url+"/jsfc/?"+q.Encode())
		var a answer
		if err := json.Unmarshal([]byte(body), &a); status != 200 || err != nil || len(a.Results) != len(urls) {
			t.Fatalf("GET /jsfc/ for %v: %d %q (%v)", urls, status, body, err)
		}
		return a
	}

	for visit := 1; visit <= 2; visit++ {
		n := fmt.Sprint(visit)
		a := call(target.URL+"/a?n="+n, target.URL+"/bb?n="+n)
		for i, path := range []string{"/a", "/bb"} {
			if r := a.Results[i]; r.Status != 200 || r.Body != "page "+path || r.Bytes != len("page "+path) || r.Error != "" {
				t.Errorf("visit %d, %s: %+v; want status 200 and body %q", visit, path, r, "page "+path)
			}
		}
		// KV: a missing key is null; the count written by the first visit is read by the second.
		switch {
		case a.Visits != visit:
			t.Errorf("visit %d: the answer counts %d visits", visit, a.Visits)
		case visit == 1 && a.Previous != nil:
			t.Errorf("first visit: KV held %q for the count; want null", *a.Previous)
		case visit == 2 && (a.Previous == nil || *a.Previous != "1"):
			t.Errorf("second visit: KV held %v for the count; want \"1\"", a.Previous)
		}
		// The two fetches ran at once: each was served while the other was, and both took
		// about one delay, not two (a generous bound: the machine may be busy).
		mu.Lock()
		sa, sb := spans["/a?n="+n], spans["/bb?n="+n]
		mu.Unlock()
		if !sa[0].Before(sb[1]) || !sb[0].Before(sa[1]) {
			t.Errorf("visit %d: the target served /a during %v and /bb during %v: they did not overlap", visit, sa, sb)
		}
		t.Logf("visit %d: two fetches of %v each took %d ms together", visit, delay, a.ElapsedMS)
		if limit := 1.8 * float64(delay.Milliseconds()); float64(a.ElapsedMS) >= limit {
			t.Errorf("visit %d: the fetches took %d ms together; want under %.0f ms (1.8 times one fetch)", visit, a.ElapsedMS, limit)
		}
	}
	if !logged(p, "jsfc", "fetched 2 URLs in", "visit 2") {
		t.Error("wisp logs jsfc: no console.log line of the second visit")
	}

	// A URL that is not valid rejects the fetch with a TypeError; the other fetch goes on.
	a := call("nope", target.URL+"/c")
	if r := a.Results[0]; !strings.HasPrefix(r.Error, `TypeError: Invalid URL "nope"`) || r.Status != 0 {
		t.Errorf("fetch of an invalid URL: %+v; want a TypeError", r)
	}
	if r := a.Results[1]; r.Body != "page /c" {
		t.Errorf("fetch beside an invalid one: %+v", r)
	}

	// Limited to other hosts, the function's fetch of the target rejects with a TypeError that
	// says why; the script catches it and answers.
	if _, err := p.cli("deploy", "jsfc", buildtest.Dir("jsfetchcount"), "--fetch-allow", "example.com"); err != nil {
		t.Fatalf("deploy jsfetchcount with an allow-list: %v", err)
	}
	a = call(target.URL + "/d")
	if r := a.Results[0]; !strings.HasPrefix(r.Error, "TypeError: fetch "+target.URL+"/d: ") || !strings.Contains(r.Error, "allow-list") || r.Status != 0 {
		t.Errorf("fetch outside the allow-list: %+v; want a TypeError naming the allow-list", r)
	}
	if a.Visits < 3 {
		t.Errorf("visits after the redeploy: %d; want the count kept in KV", a.Visits)
	}
}

// logged reports whether `wisp logs fn` shows a line holding all of parts, waiting a while for
// it: lines reach the function's stream after the response.
func logged(p *process, fn string, parts ...string) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err := p.cli("logs", fn); err == nil && hasLine(out, parts...) {
			return true
		}
	}
	return false
}
