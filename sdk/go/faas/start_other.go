//go:build !wasip1

package faas

import "github.com/wispfn/wisp/sdk/go/faas/http"

// Start records h as the handler of every request and returns. Call it once, from main; main
// should return after it (the instance then waits for requests).
//
// Outside GOOS=wasip1 there is no host to serve: Start panics, telling to build the program with
// `wisp build`.
func Start(h func(*http.Request) *http.Response) {
	panic("faas.Start: this program is a Wisp function and runs only inside Wisp; " +
		"build it with `wisp build DIR -o OUT.wasm` (GOOS=wasip1 GOARCH=wasm, c-shared)")
}
