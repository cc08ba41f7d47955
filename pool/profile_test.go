package pool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pprof "github.com/google/pprof/profile"

	"github.com/wispfn/wisp/pool"
	"github.com/wispfn/wisp/pool/abi"
)

// load invokes f with the requests of paths from n goroutines, round and round, until the
// returned function is called; that function waits for them and reports their errors.
func load(t *testing.T, f *pool.Function, n int, paths ...string) (stop func()) {
	t.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				r, err := invoke(f, request("GET", paths[i%len(paths)]))
				if err == nil && r.status != 200 {
					err = fmt.Errorf("%s: status %d", paths[i%len(paths)], r.status)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	return func() {
		close(quit)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// flat returns the function names of p by the samples whose leaf they are, most first.
func flat(p *pprof.Profile) []string {
	by := map[string]int64{}
	for _, s := range p.Sample {
		by[s.Location[0].Line[0].Function.Name] += s.Value[0]
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return by[names[i]] > by[names[j]] })
	return names
}

// stackNames returns the function names of a sample, leaf first.
func stackNames(s *pprof.Sample) []string {
	var out []string
	for _, l := range s.Location {
		for _, ln := range l.Line {
			out = append(out, ln.Function.Name)
		}
	}
	return out
}

func index(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

func TestProfileSamplesGuestStacks(t *testing.T) {
	f := compile(t, newRuntime(t), "busy", pool.Limits{})
	stop := load(t, f, 2, "/sieve?n=300000")
	var buf bytes.Buffer
	res, err := f.Profile(context.Background(), time.Second, &buf)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	p, err := pprof.Parse(&buf)
	if err != nil {
		t.Fatalf("the profile does not parse: %v", err)
	}
	t.Logf("%+v; top functions %q", res, flat(p)[:min(5, len(flat(p)))])
	if len(p.SampleType) != 2 || p.SampleType[0].Type != "samples" || p.SampleType[0].Unit != "count" || p.SampleType[1].Unit != "nanoseconds" {
		t.Fatalf("sample types %v; want samples/count, cpu/nanoseconds", p.SampleType)
	}
	if len(p.Sample) == 0 || res.Samples == 0 || res.Requests == 0 {
		t.Fatalf("%d samples in the profile, result %+v; want some of each", len(p.Sample), res)
	}
	var total int64
	for _, s := range p.Sample {
		total += s.Value[0]
		names := stackNames(s)
		// Location[0] is the leaf: the root is the export the pool called, and main.sieve is
		// called by main.handle, never the other way round.
		if root := names[len(names)-1]; root != "wisp_handle" {
			t.Errorf("stack %q: root %q; want wisp_handle", names, root)
		}
		if i, j := index(names, "main.sieve"), index(names, "main.handle"); i >= 0 && j >= 0 && i > j {
			t.Errorf("stack %q: main.handle is nearer the leaf than main.sieve", names)
		}
	}
	if total != int64(res.Samples) {
		t.Errorf("the samples add up to %d; the result says %d", total, res.Samples)
	}
	if top := flat(p); index(top[:min(3, len(top))], "main.sieve") < 0 {
		t.Errorf("top functions %q; want main.sieve among the first three", top)
	}
	if n := f.ProfilingInstances(); n != 0 {
		t.Fatalf("%d instances of the profile live after it ended; want 0", n)
	}
	// Requests are back on ordinary instances.
	if r, err := invoke(f, request("GET", "/fib?n=10")); err != nil || r.body != "55\n" {
		t.Fatalf("after the profile: %+v, %v; want 55", r, err)
	}
	if n, live := f.ProfilingInstances(), f.Live(); n != 0 || live == 0 {
		t.Fatalf("after the profile, a request left %d profile instances, %d live; want 0 and some", n, live)
	}
}

// TestProfileWithoutRequests: a window in which the function gets no request gives a valid,
// empty profile; a second profile during it is refused.
func TestProfileWithoutRequests(t *testing.T) {
	f := compile(t, newRuntime(t), "busy", pool.Limits{})
	var buf bytes.Buffer
	done := make(chan error, 1)
	var res pool.ProfileResult
	go func() {
		var err error
		res, err = f.Profile(context.Background(), time.Second, &buf)
		done <- err
	}()
	for !f.ProfileRunning() {
		select {
		case err := <-done:
			t.Fatalf("the profile ended before it ran: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if _, err := f.Profile(context.Background(), time.Second, &bytes.Buffer{}); !errors.Is(err, pool.ErrProfiling) {
		t.Errorf("a second profile: err = %v; want ErrProfiling", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p, err := pprof.Parse(&buf)
	if err != nil {
		t.Fatalf("the empty profile does not parse: %v", err)
	}
	if len(p.Sample) != 0 || res.Samples != 0 || res.Requests != 0 {
		t.Fatalf("%d samples, result %+v; want none", len(p.Sample), res)
	}
	if p.DurationNanos < int64(time.Second) {
		t.Errorf("duration %v; want the window, 1s", time.Duration(p.DurationNanos))
	}
}

func TestProfileRefusesBadDurations(t *testing.T) {
	f := compile(t, newRuntime(t), "hello", pool.Limits{})
	for _, d := range []time.Duration{0, -time.Second, time.Minute + time.Second} {
		if _, err := f.Profile(context.Background(), d, &bytes.Buffer{}); err == nil {
			t.Errorf("Profile(%v): no error", d)
		}
	}
}

// TestProfileEndsWhenClosed: closing the function (a redeploy) ends its profile early with
// what it has, and the profile's instances go with it.
func TestProfileEndsWhenClosed(t *testing.T) {
	f := compile(t, newRuntime(t), "busy", pool.Limits{})
	done := make(chan error, 1)
	var res pool.ProfileResult
	var buf bytes.Buffer
	go func() {
		var err error
		res, err = f.Profile(context.Background(), time.Minute, &buf)
		done <- err
	}()
	for !f.ProfileRunning() {
		time.Sleep(time.Millisecond)
	}
	if _, err := invoke(f, request("GET", "/sieve?n=1000")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	select {
	case err := <-done:
		if err != nil || !res.EndedEarly || res.Requests != 1 {
			t.Fatalf("Profile: %+v, %v; want it ended early after 1 request", res, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the profile did not end when its function closed")
	}
	if _, err := pprof.Parse(&buf); err != nil {
		t.Fatal(err)
	}
	if n := f.ProfilingInstances(); n != 0 {
		t.Fatalf("%d instances of the profile live after Close; want 0", n)
	}
}

// TestProfileHammer starts and ends profiles while more requests than instances run: requests
// in flight cross from ordinary instances to the profile's and back, instances are stolen
// from the idle pool at the limit, and none is lost (run it under -race).
func TestProfileHammer(t *testing.T) {
	f := compile(t, newRuntime(t), "busy", pool.Limits{MaxInstances: 2})
	stop := load(t, f, 4, "/sieve?n=20000", "/fib?n=12", "/")
	for i := 0; i < 2; i++ {
		var buf bytes.Buffer
		if _, err := f.Profile(context.Background(), time.Second, &buf); err != nil {
			t.Fatal(err)
		}
		if _, err := pprof.Parse(&buf); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if n, live := f.ProfilingInstances(), f.Live(); n != 0 || live > 2 {
		t.Fatalf("%d profile instances and %d live after the load; want 0 and at most 2", n, live)
	}
}

// BenchmarkInvokeWhileProfiling is the cost of a profile to the requests it samples: one
// request at a time to the busy guest (a loop without calls, a call-heavy recursion) and to
// hello, without and with a profile running.
func BenchmarkInvokeWhileProfiling(b *testing.B) {
	rt := newRuntime(b)
	for _, fn := range []struct{ example, path, want string }{
		{"busy", "/sieve?n=300000", "25997\n"},
		{"busy", "/fib?n=20", "6765\n"},
		{"hello", "/", "Hello WASM from Golang!"},
	} {
		f := compile(b, rt, fn.example, pool.Limits{})
		for _, profiling := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s%s/profiling=%v", fn.example, strings.Split(fn.path, "?")[0], profiling), func(b *testing.B) {
				if profiling {
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					go func() { _, err := f.Profile(ctx, pool.MaxProfileDuration, io.Discard); done <- err }()
					for !f.ProfileRunning() {
						time.Sleep(time.Millisecond)
					}
					defer func() {
						cancel()
						if err := <-done; !errors.Is(err, context.Canceled) {
							b.Errorf("profile: %v", err)
						}
					}()
				}
				req := request("GET", fn.path)
				check := func(resp *abi.Response) error {
					if string(resp.Body) != fn.want {
						return fmt.Errorf("body %q; want %q", resp.Body, fn.want)
					}
					return nil
				}
				if err := f.Invoke(context.Background(), req, check); err != nil { // not timed: the cold start
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := f.Invoke(context.Background(), req, check); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
