package faas

import (
	"testing"

	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/internal/abi"
)

// helloHandler is examples/hello's handler.
func helloHandler(_ *http.Request) *http.Response {
	return &http.Response{
		StatusCode: 200,
		Header:     map[string][]string{"Content-Type": {"text/plain"}},
		Body:       http.MustNewBody([]byte("Hello WASM from Golang!")),
	}
}

// BenchmarkServe measures the guest side of a request, without the host: serve with the hello
// handler, and its parts. Run it as wasm too, where it counts:
//
//	GOOS=wasip1 GOARCH=wasm go test -c -o /tmp/faas.wasm ./faas
//	go run github.com/tetratelabs/wazero/cmd/wazero run /tmp/faas.wasm -test.run=- -test.bench=Serve
func BenchmarkServe(b *testing.B) {
	enc := abi.AppendRequest(nil, &abi.Request{Method: "GET", URI: "/", FullURI: "/hello/",
		Host: "127.0.0.1:8080", RemoteAddr: "127.0.0.1:5000",
		Headers: hs("Accept", "*/*", "User-Agent", "bench")})
	static := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}}}
	b.Run("hello", func(b *testing.B) {
		handler = helloHandler
		defer func() { handler = nil }()
		b.ReportAllocs()
		for b.Loop() {
			serve(enc)
		}
	})
	b.Run("static", func(b *testing.B) {
		handler = func(*http.Request) *http.Response { return static }
		defer func() { handler = nil }()
		b.ReportAllocs()
		for b.Loop() {
			serve(enc)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := abi.DecodeRequest(enc, &decoded); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("newRequest", func(b *testing.B) {
		if err := abi.DecodeRequest(enc, &decoded); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			newRequest(&decoded)
		}
	})
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			helloHandler(nil)
		}
	})
	b.Run("encode", func(b *testing.B) {
		resp := helloHandler(nil)
		b.ReportAllocs()
		for b.Loop() {
			respBuf = encode(respBuf[:0], resp)
		}
	})
	b.Run("alloc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = new([8]uint64)
		}
	})
}

var sink *[8]uint64
