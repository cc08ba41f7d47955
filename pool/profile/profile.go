// Package profile samples the wasm call stacks of guest code by time and writes them as pprof
// profiles: where a function's requests spend their CPU, by wasm function.
//
// A module compiled with a Functions listener factory (Functions.Context) calls its listeners
// before and after every wasm function call. Each listener does nothing unless the call's
// context carries a Sampler (Sampler.Begin). A sampler keeps a shadow of the wasm call stack
// and reads the monotonic clock at each call and return. The sampling clock ticks every Period
// of guest wall time (per instance, counted only while guest code runs); the stack changes only
// at calls and returns, so every tick since the previous event belongs to the stack as it is,
// and the event charges them to it, with the CPU time the thread used since the previous
// sample. Thread CPU time is a system call, read once per sample and twice per top-level call.
//
// Costs while sampling, per wasm call: two listener calls (wazero leaves native code for each
// and unwinds the native stack before Before), two monotonic clock reads, a push and a pop:
// ~60 ns of this package's, ~270 ns in all on a Go guest (BenchmarkListener,
// pool.BenchmarkInvokeWhileProfiling).
package profile

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/google/pprof/profile"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Period is the guest wall time between two samples of one instance: 1 ms, a thousand
// samples per second of guest time.
const Period = time.Millisecond

// Functions is the listener factory of one listener-enabled compilation of a module, and the
// names of its functions (from the module's name section). Its listeners are stateless, so
// every instance of the compiled module, in every profile, shares them. It is safe for
// concurrent use once the compilation it was passed to has returned.
type Functions struct {
	mu    sync.Mutex
	names []string // by function index (imports included)
}

// NewFunctions returns a factory to compile one module with.
func NewFunctions() *Functions { return &Functions{} }

// Context returns ctx carrying fs as the listener factory of the modules compiled with it
// (wazero's experimental.WithFunctionListenerFactory).
func (fs *Functions) Context(ctx context.Context) context.Context {
	return experimental.WithFunctionListenerFactory(ctx, fs)
}

// NewFunctionListener implements experimental.FunctionListenerFactory: wazero calls it for each
// function the module defines, at compile time.
func (fs *Functions) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	i := def.Index()
	name := def.Name()
	if name == "" {
		name = fmt.Sprintf("wasm-function[%d]", i)
	}
	fs.mu.Lock()
	for uint32(len(fs.names)) <= i {
		fs.names = append(fs.names, "")
	}
	fs.names[i] = name
	fs.mu.Unlock()
	return &listener{fn: i}
}

// name returns the name of function i.
func (fs *Functions) name(i uint32) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if i < uint32(len(fs.names)) && fs.names[i] != "" {
		return fs.names[i]
	}
	return fmt.Sprintf("wasm-function[%d]", i)
}

// samplerKey is the context key of the Sampler of a call.
type samplerKey struct{}

// listener is the listener of wasm function fn.
type listener struct{ fn uint32 }

func (l *listener) Before(ctx context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	if s, ok := ctx.Value(samplerKey{}).(*Sampler); ok {
		s.enter(l.fn)
	}
}

func (l *listener) After(ctx context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64) {
	if s, ok := ctx.Value(samplerKey{}).(*Sampler); ok {
		s.leave()
	}
}

func (l *listener) Abort(ctx context.Context, _ api.Module, _ api.FunctionDefinition, _ error) {
	if s, ok := ctx.Value(samplerKey{}).(*Sampler); ok {
		s.leave()
	}
}

// Recorder collects the samples of one profile, from the samplers of every instance taking
// part. It is safe for concurrent use.
type Recorder struct {
	fns    *Functions
	period int64
	start  time.Time

	mu      sync.Mutex
	stopped bool
	end     time.Time
	samples map[string]*counts // by stack: function indices, root first, 4 bytes each
	n       int                // samples taken (ticks)
	calls   int                // calls begun
}

type counts struct{ samples, cpu int64 }

// NewRecorder starts a profile whose stacks are named by fns.
func NewRecorder(fns *Functions) *Recorder {
	return &Recorder{fns: fns, period: int64(Period), start: time.Now(), samples: map[string]*counts{}}
}

// Stop ends the profile: samples taken later are dropped.
func (r *Recorder) Stop() {
	r.mu.Lock()
	if !r.stopped {
		r.stopped, r.end = true, time.Now()
	}
	r.mu.Unlock()
}

// Samples returns the number of samples recorded so far.
func (r *Recorder) Samples() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Duration returns how long the profile ran: until Stop, or until now.
func (r *Recorder) Duration() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return r.end.Sub(r.start)
	}
	return time.Since(r.start)
}

// Calls returns the number of calls (requests) sampled so far: Sampler.Begin.
func (r *Recorder) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *Recorder) add(stack []uint32, ticks, cpu int64) {
	var buf [64 * 4]byte
	key := buf[:0]
	for _, fn := range stack {
		key = binary.LittleEndian.AppendUint32(key, fn)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	c := r.samples[string(key)]
	if c == nil {
		c = &counts{}
		r.samples[string(key)] = c
	}
	c.samples += ticks
	c.cpu += cpu
	r.n += int(ticks)
}

func (r *Recorder) began() {
	r.mu.Lock()
	if !r.stopped {
		r.calls++
	}
	r.mu.Unlock()
}

// Write writes the profile as a gzipped pprof protobuf, as Go's CPU profiles are: sample types
// samples/count and cpu/nanoseconds, one location per wasm function, Location[0] the leaf.
// comment goes into the profile's comments. Stop it first.
func (r *Recorder) Write(w io.Writer, comment string) error {
	r.mu.Lock()
	end := r.end
	if !r.stopped {
		end = time.Now()
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "samples", Unit: "count"},
			{Type: ClockName, Unit: "nanoseconds"},
		},
		DefaultSampleType: ClockName,
		PeriodType:        &profile.ValueType{Type: ClockName, Unit: "nanoseconds"},
		Period:            r.period,
		TimeNanos:         r.start.UnixNano(),
		DurationNanos:     int64(end.Sub(r.start)),
		Comments:          []string{comment},
	}
	// The module is the one mapping; its functions are named already, so pprof does not try
	// to symbolize.
	m := &profile.Mapping{ID: 1, File: "guest.wasm", HasFunctions: true}
	p.Mapping = []*profile.Mapping{m}
	locs := map[uint32]*profile.Location{}
	keys := make([]string, 0, len(r.samples))
	for k := range r.samples {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a stable output for equal inputs
	for _, k := range keys {
		c := r.samples[k]
		n := len(k) / 4
		s := &profile.Sample{Value: []int64{c.samples, c.cpu}, Location: make([]*profile.Location, 0, n)}
		for i := n - 1; i >= 0; i-- { // leaf first
			fn := uint32(k[i*4]) | uint32(k[i*4+1])<<8 | uint32(k[i*4+2])<<16 | uint32(k[i*4+3])<<24
			loc := locs[fn]
			if loc == nil {
				f := &profile.Function{ID: uint64(len(p.Function) + 1), Name: r.fns.name(fn), SystemName: r.fns.name(fn)}
				p.Function = append(p.Function, f)
				loc = &profile.Location{ID: uint64(len(p.Location) + 1), Mapping: m, Address: uint64(fn), Line: []profile.Line{{Function: f}}}
				p.Location = append(p.Location, loc)
				locs[fn] = loc
			}
			s.Location = append(s.Location, loc)
		}
		p.Sample = append(p.Sample, s)
	}
	r.mu.Unlock()
	if err := p.CheckValid(); err != nil {
		return fmt.Errorf("cannot build profile: %w", err)
	}
	return p.Write(w)
}

// Sampler samples the calls of one instance, one call at a time: it is not safe for
// concurrent use. Samples go to the Recorder it was made by.
type Sampler struct {
	rec   *Recorder
	stack []uint32 // shadow of the wasm call stack, root first

	next    int64 // nanotime at which the next sample is due; valid while stack is not empty
	left    int64 // guest wall time left until the next sample, between calls
	cpuMark int64 // thread CPU clock at the start of the call or at the last sample
	pending int64 // CPU time used and not yet charged to a sample (calls shorter than a period)
}

// NewSampler returns a sampler for one instance. The first sample is due after a random part
// of the period, so that instances started together do not sample in step.
func (r *Recorder) NewSampler() *Sampler {
	return &Sampler{rec: r, left: 1 + rand.Int64N(r.period), stack: make([]uint32, 0, 64)}
}

// Begin prepares a request's guest calls to be sampled and returns the context to make them
// with. It locks the goroutine to its thread, whose CPU clock the samples read, until End.
func (s *Sampler) Begin(ctx context.Context) context.Context {
	runtime.LockOSThread()
	s.stack = s.stack[:0]
	s.rec.began()
	return context.WithValue(ctx, samplerKey{}, s)
}

// End ends what Begin started.
func (s *Sampler) End() {
	if len(s.stack) > 0 { // a trap left frames without After or Abort: close the call
		s.stack = s.stack[:0]
		s.endCall(nanotime())
	}
	runtime.UnlockOSThread()
}

// enter is a call of fn: the time since the previous event was spent in the caller.
func (s *Sampler) enter(fn uint32) {
	now := nanotime()
	if len(s.stack) == 0 {
		s.next = now + s.left
		s.cpuMark = threadCPU()
	} else if now >= s.next {
		s.sample(now)
	}
	s.stack = append(s.stack, fn)
}

// leave is the return (or abort) of the innermost call: the time since the previous event
// was spent in it.
func (s *Sampler) leave() {
	if len(s.stack) == 0 {
		return
	}
	now := nanotime()
	if now >= s.next {
		s.sample(now)
	}
	s.stack = s.stack[:len(s.stack)-1]
	if len(s.stack) == 0 {
		s.endCall(now)
	}
}

// endCall carries what the call used since its last sample over to the next call.
func (s *Sampler) endCall(now int64) {
	s.left = max(s.next-now, 1)
	s.pending += threadCPU() - s.cpuMark
}

// sample charges the ticks of the sampling clock that fell since the previous event, all in
// the current stack (the stack changes only at events), and the CPU time used since the
// previous sample.
func (s *Sampler) sample(now int64) {
	ticks := 1 + (now-s.next)/s.rec.period
	cpu := threadCPU()
	s.rec.add(s.stack, ticks, s.pending+cpu-s.cpuMark)
	s.pending, s.cpuMark = 0, cpu
	s.next += ticks * s.rec.period
}

// epoch anchors nanotime; time.Since reads only the monotonic clock.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }
