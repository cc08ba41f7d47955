package main

import (
	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/http"
)

func main() { faas.Start(handler) }

func handler(_ *http.Request) (resp *http.Response) {
	return &http.Response{
		StatusCode: 200,
		Header:     map[string][]string{"Content-Type": {"text/plain"}},
		Body:       http.MustNewBody([]byte("Hello WASM from Golang!")),
	}
}
