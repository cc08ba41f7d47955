package engine

import (
	"io"
	"testing"
)

// BenchmarkHello serves jshello's request natively (TestHello checks the answers); in the wasm
// guest the same work takes ~10 times longer.
func BenchmarkHello(b *testing.B) {
	e, err := New(hello, Options{Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.serve(request(b, "GET", "/a/b?x=1", "")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNew is what pre-initialization costs natively: the runtime, the Web API and the
// script.
func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(hello, Options{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
			b.Fatal(err)
		}
	}
}
