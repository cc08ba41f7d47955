// Command guest is the test guest of pool/snapshot: a WASI reactor whose
// package init and main build state that its exports let the host observe.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o guest.wasm
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

var (
	squares  []uint64  // filled by init
	start    time.Time // set by init, with a monotonic reading
	started  bool      // set by main
	greeting string    // read from the environment by main
	counter  int64
	slot     int32
	kept     [][]byte
)

func init() {
	squares = make([]uint64, 1<<16)
	for i := range squares {
		squares[i] = uint64(i) * uint64(i)
	}
	start = time.Now()
}

func main() {
	started = true
	greeting = os.Getenv("GREETING")
}

//go:wasmexport wisp_start
func wispStart() { main() }

// ready returns 1 if init and main have run and the state they built is intact.
//
//go:wasmexport ready
func ready() int32 {
	if !started || len(squares) != 1<<16 {
		return 0
	}
	for i, v := range squares {
		if v != uint64(i)*uint64(i) {
			return 0
		}
	}
	return 1
}

// incr increments a counter and returns it.
//
//go:wasmexport incr
func incr() int64 {
	counter++
	return counter
}

// elapsed returns the nanoseconds since init by the monotonic clock.
//
//go:wasmexport elapsed
func elapsed() int64 { return int64(time.Since(start)) }

// greet prints the greeting read by main and the one in the environment now,
// and returns the length of the first.
//
//go:wasmexport greet
func greet() int32 {
	fmt.Printf("%s|%s\n", greeting, os.Getenv("GREETING"))
	return int32(len(greeting))
}

// churn allocates mib MiB of garbage, collects it and returns how many
// collections ran.
//
//go:wasmexport churn
func churn(mib int32) int32 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var sink []byte
	for i := 0; i < int(mib)<<8; i++ {
		sink = make([]byte, 4<<10)
		sink[0] = byte(i)
	}
	_ = sink
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int32(after.NumGC - before.NumGC)
}

// hold allocates mib MiB and keeps it, then returns the MiB kept so far.
//
//go:wasmexport hold
func hold(mib int32) int32 {
	for i := 0; i < int(mib); i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4 << 10 {
			b[j] = 1
		}
		kept = append(kept, b)
	}
	return int32(len(kept))
}

// set stores v.
//
//go:wasmexport set
func set(v int32) { slot = v }

// get returns the value stored by set.
//
//go:wasmexport get
func get() int32 { return slot }

// allocSink keeps allocate's objects reachable until the next call.
var allocSink [][]byte

// allocate makes n 64-byte heap objects: BenchmarkGuestAllocation's measure of what one
// allocation costs a Go guest.
//
//go:wasmexport allocate
func allocate(n int32) {
	allocSink = allocSink[:0]
	for i := int32(0); i < n; i++ {
		allocSink = append(allocSink, make([]byte, 64))
	}
}
