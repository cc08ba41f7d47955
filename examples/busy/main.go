// Command busy is a Wisp function that spends CPU on request, for tests and benchmarks of
// guest profiles (wisp profile):
//
//	/sieve?n=N  counts the primes below N (default 200,000) in loops that make no call
//	/fib?n=N    computes the Nth Fibonacci number by naive recursion (default 20, at most 35):
//	            a call-heavy guest, the worst case for a profiler that hooks every call
//	anything else answers "ok"
//
// The answer is the result as text.
package main

import (
	"strconv"

	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/http"
)

func main() { faas.Start(handle) }

func handle(r *http.Request) *http.Response {
	var out int
	switch r.URL.Path {
	case "/sieve":
		out = sieve(param(r, 200_000, 1<<26))
	case "/fib":
		out = fib(param(r, 20, 35))
	default:
		return text("ok\n")
	}
	return text(strconv.Itoa(out) + "\n")
}

// param returns the query parameter n, or def when it is missing or not in [0, max].
func param(r *http.Request, def, max int) int {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 || n > max {
		return def
	}
	return n
}

// sieve counts the primes below n with the sieve of Eratosthenes.
//
//go:noinline
func sieve(n int) int {
	composite := make([]bool, n)
	count := 0
	for i := 2; i < n; i++ {
		if composite[i] {
			continue
		}
		count++
		for j := i * i; j < n; j += i {
			composite[j] = true
		}
	}
	return count
}

// fib is the naive recursive Fibonacci: fib(n) makes about 2·fib(n) calls.
func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

func text(s string) *http.Response {
	return &http.Response{
		Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:   http.MustNewBody([]byte(s)),
	}
}
