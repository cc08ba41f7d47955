// Command guest is the test guest of the ring's end-to-end tests: each route exercises a
// hostcall path, and the bench_* exports loop over one hostcall for benchmarks.
package main

import (
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/fetch"
	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/faas/kv"
	"github.com/wispfn/wisp/sdk/go/faas/log"
	"github.com/wispfn/wisp/sdk/go/faas/rpc"
)

func main() { faas.Start(handle) }

func handle(r *http.Request) *http.Response {
	q := r.URL.Query()
	n, _ := strconv.Atoi(q.Get("n"))
	switch r.URL.Path {
	case "/log":
		for i := range n {
			log.Info("line", "i", i)
		}
		if err := log.Log(log.LevelWarn, "last", "n", n); err != nil {
			return text(500, err.Error())
		}
		return text(200, "logged")
	case "/fetch":
		fs := make([]*fetch.Future, n)
		for i := range fs {
			req, err := fetch.NewRequest("GET", q.Get("url")+"?i="+strconv.Itoa(i), nil)
			if err != nil {
				return text(400, err.Error())
			}
			fs[i] = fetch.Start(req)
		}
		var out []string
		for _, f := range fs {
			resp, err := f.Wait()
			if err != nil {
				out = append(out, err.Error())
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			out = append(out, strconv.Itoa(resp.StatusCode)+" "+string(b))
		}
		return text(200, strings.Join(out, "\n"))
	case "/kv":
		key := q.Get("key")
		if v := q.Get("put"); v != "" {
			if err := kv.Put(key, []byte(v), 0); err != nil {
				return text(500, err.Error())
			}
		}
		v, ok, err := kv.Get(key)
		if err != nil {
			return text(500, err.Error())
		}
		return text(200, strconv.FormatBool(ok)+" "+string(v))
	case "/burst":
		fs := make([]*kv.GetFuture, n)
		for i := range fs {
			fs[i] = kv.StartGet(q.Get("key"))
		}
		found := 0
		for _, f := range fs {
			if _, ok, err := f.Wait(); err != nil {
				return text(500, err.Error())
			} else if ok {
				found++
			}
		}
		return text(200, strconv.Itoa(found))
	case "/rpc":
		req, err := rpc.NewRequest("POST", q.Get("path"), []byte("from "+os.Getenv("SELF")))
		if err != nil {
			return text(400, err.Error())
		}
		resp, err := rpc.Call(q.Get("fn"), req)
		if err != nil {
			return text(502, err.Error())
		}
		b, _ := io.ReadAll(resp.Body)
		return text(resp.StatusCode, string(b))
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		return text(200, r.Method+" "+r.URL.String()+" "+string(b)+" caller="+r.Header.Get("Wisp-Caller"))
	case "/depth":
		req, _ := rpc.NewRequest("GET", "/depth", nil)
		resp, err := rpc.Call(os.Getenv("SELF"), req)
		if errors.Is(err, rpc.ErrDepth) {
			return text(200, "1")
		}
		if err != nil {
			return text(502, err.Error())
		}
		b, _ := io.ReadAll(resp.Body)
		d, _ := strconv.Atoi(string(b))
		return text(200, strconv.Itoa(d+1))
	case "/leak":
		// Start calls and never wait for them: the host and the SDK must drop them when the
		// request ends.
		for range n {
			kv.StartGet("k")
			if u := q.Get("url"); u != "" {
				req, _ := fetch.NewRequest("GET", u, nil)
				fetch.Start(req)
			}
		}
		return text(200, "left "+strconv.Itoa(n))
	case "/heap":
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return text(200, strconv.FormatUint(m.HeapAlloc, 10))
	case "/raw":
		return text(200, raw())
	}
	return text(404, "no route "+r.URL.Path)
}

func text(status int, s string) *http.Response {
	return &http.Response{StatusCode: status, Body: http.MustNewBody([]byte(s))}
}

// The imports again, with raw addresses, to call them with arguments the SDK never passes.

//go:wasmimport wisp submit
func rawSubmit(eventID, providerID, dataPtr, dataLen uint32) int32

//go:wasmimport wisp poll
func rawPoll(eventIDPtr, sizePtr uint32) int32

//go:wasmimport wisp wait
func rawWait(eventIDPtr, sizePtr uint32) int32

//go:wasmimport wisp read
func rawRead(eventID, providerID, dataPtr uint32) int32

// raw calls the imports with bad arguments and reports what each returned.
func raw() string {
	rets := []int32{
		rawSubmit(1, 2, 0xffffff00, 1000), // payload past the end of memory
		rawSubmit(1, 2, 0, 0xffffffff),    // absurd length
		rawSubmit(1, 50, 0, 0),            // unknown provider
		rawPoll(0xfffffffc, 0),            // pointer past the end of memory
		rawWait(0, 0xfffffff0),            // same, for wait
		rawWait(0, 4),                     // nothing in flight
		rawRead(12345, 2, 0),              // unknown event
		rawRead(0, 0, 0xffffffff),         // unknown event, bad pointer
	}
	s := make([]string, len(rets))
	for i, r := range rets {
		s[i] = strconv.Itoa(int(r))
	}
	return strings.Join(s, ",")
}

//go:wasmexport bench_log
func benchLog(n uint32) uint32 {
	errs := uint32(0)
	for range n {
		if log.Log(log.LevelInfo, "bench") != nil {
			errs++
		}
	}
	return errs
}

//go:wasmexport bench_log_detached
func benchLogDetached(n uint32) uint32 {
	for range n {
		log.Info("bench")
	}
	return 0
}

//go:wasmexport bench_kv_get
func benchKVGet(n uint32) uint32 {
	errs := uint32(0)
	for range n {
		if _, ok, err := kv.Get("bench"); err != nil || !ok {
			errs++
		}
	}
	return errs
}

// benchRawLog is bench_log without the SDK: the imports called directly, for comparison.
//
//go:wasmexport bench_raw_log
func benchRawLog(n uint32) uint32 {
	payload := []byte{1, 5, 0, 0, 0, 'b', 'e', 'n', 'c', 'h', 0, 0, 0, 0}
	var id, size uint32
	out := make([]byte, 64)
	errs := uint32(0)
	for range n {
		if rawSubmit(7, 1, uint32(uintptr(unsafe.Pointer(&payload[0]))), uint32(len(payload))) < 0 {
			errs++
		}
		if rawWait(uint32(uintptr(unsafe.Pointer(&id))), uint32(uintptr(unsafe.Pointer(&size)))) < 0 {
			errs++
		}
		if rawRead(7, 1, uint32(uintptr(unsafe.Pointer(&out[0])))) < 0 {
			errs++
		}
	}
	return errs
}

// benchCompute runs a 100-iteration arithmetic loop per op: the cost of guest code itself.
//
//go:wasmexport bench_compute
func benchCompute(n uint32) uint32 {
	x := uint32(1)
	for i := range n * 100 {
		x = x*31 + i
	}
	return x & 0
}
