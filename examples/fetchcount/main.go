// Command fetchcount is a Wisp function that fetches two URLs at once and counts its visits in
// KV, to show hostcall futures:
//
//	GET /?url=A&url=B   fetches A and B concurrently (up to 8 URLs); without url parameters it
//	                    fetches the comma-separated URLs of the FETCHCOUNT_URLS variable
//
// It answers JSON with the visit count and, per URL, the status and body size or the error.
// The function needs the hosts on its fetch allow-list (if it has one). The count is read, then
// written: two requests at the same moment may count one visit.
package main

import (
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/fetch"
	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/faas/kv"
	"github.com/wispfn/wisp/sdk/go/faas/log"
)

func main() { faas.Start(handle) }

// Result is what fetching one URL gave.
type Result struct {
	URL    string `json:"url"`
	Status int    `json:"status,omitempty"`
	Bytes  int    `json:"bytes"`
	Error  string `json:"error,omitempty"`
}

// Answer is the JSON answer.
type Answer struct {
	Visits  int      `json:"visits"`
	Results []Result `json:"results"`
}

const visitsKey = "visits"

func handle(r *http.Request) *http.Response {
	urls := r.URL.Query()["url"]
	if len(urls) == 0 && os.Getenv("FETCHCOUNT_URLS") != "" {
		urls = strings.Split(os.Getenv("FETCHCOUNT_URLS"), ",")
	}
	if len(urls) == 0 || len(urls) > 8 {
		return text(400, "give 1 to 8 URLs: /?url=A&url=B, or set FETCHCOUNT_URLS=A,B\n")
	}

	// Start everything, then wait: the fetches and the KV read run at the same time.
	visits := kv.StartGet(visitsKey)
	fetches := make([]*fetch.Future, len(urls))
	for i, u := range urls {
		req, err := fetch.NewRequest("GET", u, nil)
		if err != nil {
			return text(400, "bad url "+strconv.Quote(u)+": "+err.Error()+"\n")
		}
		fetches[i] = fetch.Start(req)
	}

	n := 0
	if v, ok, err := visits.Wait(); err != nil {
		log.Error("cannot read the visit count", "error", err)
		return text(503, "cannot read the visit count: "+err.Error()+"\n")
	} else if ok {
		n, _ = strconv.Atoi(string(v))
	}
	n++
	put := kv.StartPut(visitsKey, []byte(strconv.Itoa(n)), 0)

	ans := Answer{Visits: n, Results: make([]Result, len(urls))}
	for i, f := range fetches {
		res := Result{URL: urls[i]}
		resp, err := f.Wait()
		if err != nil {
			res.Error = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			res.Status, res.Bytes = resp.StatusCode, len(b)
		}
		ans.Results[i] = res
	}
	if err := put.Wait(); err != nil {
		log.Error("cannot store the visit count", "error", err)
	}
	log.Info("fetched", "urls", len(urls), "visits", n)

	out, err := json.Marshal(ans)
	if err != nil {
		return text(500, "cannot encode: "+err.Error()+"\n")
	}
	return &http.Response{
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   http.MustNewBody(out),
	}
}

func text(status int, s string) *http.Response {
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:       http.MustNewBody([]byte(s)),
	}
}
