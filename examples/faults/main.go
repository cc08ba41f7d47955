// Command faults is a Wisp function that misbehaves on request, for tests of the host's limits:
//
//	/panic  panics in the handler
//	/loop   loops forever
//	/oom    allocates until memory runs out
//	/exit   calls os.Exit(3)
//	anything else answers "ok" with header X-Count, the number of requests this instance served
package main

import (
	"os"
	"strconv"

	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/http"
)

func main() { faas.Start(handle) }

var (
	count int      // requests served by this instance
	hog   [][]byte // what /oom allocated, kept reachable
	spin  int      // written by /loop so the loop has an effect
)

func handle(r *http.Request) *http.Response {
	switch r.URL.Path {
	case "/panic":
		panic("faults: /panic asked for a panic")
	case "/loop":
		for {
			spin++
		}
	case "/oom":
		for {
			chunk := make([]byte, 1<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = 1
			}
			hog = append(hog, chunk)
		}
	case "/exit":
		os.Exit(3)
	}
	count++
	return &http.Response{
		Header: http.Header{"Content-Type": {"text/plain"}, "X-Count": {strconv.Itoa(count)}},
		Body:   http.MustNewBody([]byte("ok")),
	}
}
