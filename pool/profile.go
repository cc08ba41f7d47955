package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/wispfn/wisp/pool/profile"
)

// ErrProfiling is returned by Function.Profile while another profile of the function is being
// taken.
var ErrProfiling = errors.New("a profile of this function is already being taken")

// Profile bounds.
const (
	MinProfileDuration = time.Second
	MaxProfileDuration = time.Minute
)

// ProfileResult says what a profile captured.
type ProfileResult struct {
	// Samples is how many samples the profile holds: one per millisecond of guest time, per
	// instance (profile.Period).
	Samples int
	// Requests is how many requests ran on the profile's instances.
	Requests int
	// Duration is how long requests were profiled.
	Duration time.Duration
	// Compile is what compiling the listener-enabled module cost this profile: the first
	// profile of a function's code pays it; zero when it was ready.
	Compile time.Duration
	// EndedEarly is set when the function was closed (replaced or removed) before the end.
	EndedEarly bool
}

// profiling is one profile in progress: the requests that start while f.prof points to it run
// on instances of its own, made from the listener-enabled module, each with a sampler; at the
// end those instances are discarded, never put in the function's idle pool.
type profiling struct {
	compiled wazero.CompiledModule
	rec      *profile.Recorder
	idle     chan *instance // idle instances of the profile
	ended    atomic.Bool
	done     chan struct{} // closed at the end, wakes requests waiting for an instance
	stop     chan struct{} // closed by Function.Close: end early
	stopOnce sync.Once
}

// Profile takes a CPU profile of the guest code of f's requests for d (MinProfileDuration to
// MaxProfileDuration), sampled by wasm call stack, and writes it to w as a gzipped pprof
// protobuf. Requests that start during the window run on instances made from a copy of f's
// code compiled with function listeners (compiled by the first profile, then kept with the
// code); at the end those instances are discarded and requests go back to ordinary ones.
// With no profile running, requests pay one atomic load for this.
//
// The profile ends early, and is written with what it has, when f is closed; it ends with
// ctx's error when ctx is done. A second profile of f while one runs gets ErrProfiling; a
// closed f ErrClosed.
func (f *Function) Profile(ctx context.Context, d time.Duration, w io.Writer) (ProfileResult, error) {
	var res ProfileResult
	if d < MinProfileDuration || d > MaxProfileDuration {
		return res, fmt.Errorf("cannot profile %q for %v: the duration must be between %v and %v", f.name, d, MinProfileDuration, MaxProfileDuration)
	}
	if !f.profMu.TryLock() {
		return res, fmt.Errorf("cannot profile %q: %w", f.name, ErrProfiling)
	}
	defer f.profMu.Unlock()
	if f.closed.Load() {
		return res, ErrClosed
	}
	compiled, fns, took, err := f.rt.useProfiled(ctx, f.code)
	if err != nil {
		return res, fmt.Errorf("cannot compile %q for profiling: %w", f.name, err)
	}
	res.Compile = took
	if took > 0 {
		f.rt.log.Info("function compiled for profiling", "function", f.name, "took", took.Round(time.Millisecond))
	}
	p := &profiling{
		compiled: compiled,
		rec:      profile.NewRecorder(fns),
		idle:     make(chan *instance, f.limits.MaxInstances),
		done:     make(chan struct{}),
		stop:     make(chan struct{}),
	}
	f.prof.Store(p)
	f.rt.log.Info("function profile started", "function", f.name, "duration", d)
	if f.closed.Load() {
		p.signalStop() // Close ran before the store and did not see p
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-p.stop:
		res.EndedEarly = true
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.Stop()
	f.prof.CompareAndSwap(p, nil)
	p.end(f)
	f.rt.releaseCode(f.code) // the profile's hold on profiled; its instances hold their own
	if err != nil {
		return res, err
	}
	res.Samples, res.Requests, res.Duration = p.rec.Samples(), p.rec.Calls(), p.rec.Duration()
	comment := fmt.Sprintf("wisp: guest %s time of function %q by wasm call stack, sampled every %v of guest time per instance", profile.ClockName, f.name, profile.Period)
	if err := p.rec.Write(w, comment); err != nil {
		return res, fmt.Errorf("cannot write the profile of %q: %w", f.name, err)
	}
	return res, nil
}

// ProfilingInstances returns the number of live instances made for a profile.
func (f *Function) ProfilingInstances() int { return int(f.profLive.Load()) }

// signalStop ends p early.
func (p *profiling) signalStop() { p.stopOnce.Do(func() { close(p.stop) }) }

// end stops p's recorder, wakes requests waiting for one of its instances and discards its
// idle ones. Busy ones are discarded when their request ends (releaseProfiling).
func (p *profiling) end(f *Function) {
	p.ended.Store(true)
	p.rec.Stop()
	close(p.done)
	p.drain(f)
}

func (p *profiling) drain(f *Function) {
	for {
		select {
		case in := <-p.idle:
			f.discard(in)
		default:
			return
		}
	}
}

// endProfiling ends the profile in progress, if any, for Close.
func (f *Function) endProfiling() {
	if p := f.prof.Load(); p != nil {
		p.signalStop()
		p.drain(f)
	}
}

// acquireProfiling is acquire for the requests of profile p: an idle instance of p, or a new
// one from the listener-enabled module. Ordinary idle instances serve no request while p
// runs, so one is discarded when a new instance needs its slot. Once p has ended, it is
// acquire.
func (f *Function) acquireProfiling(ctx context.Context, p *profiling) (*instance, error) {
	var wait *time.Timer
	for {
		select {
		case in := <-p.idle:
			f.stats.hotStarts.Inc()
			return in, nil
		default:
		}
		if f.closed.Load() {
			return nil, ErrClosed
		}
		if p.ended.Load() {
			return f.acquire(ctx)
		}
		if n := f.live.Add(1); n <= int32(f.limits.MaxInstances) {
			start := time.Now()
			in, err := f.instantiateProfiling(ctx, p)
			if err != nil {
				f.live.Add(-1)
				f.signalFreed()
				return nil, err
			}
			f.stats.coldStarts.Inc()
			f.stats.liveInstances.Add(1)
			f.stats.instantiateSeconds.UpdateDuration(start)
			return in, nil
		}
		f.live.Add(-1)
		select {
		case in := <-f.idle:
			f.discard(in)
			continue
		default:
		}
		f.stats.waits.Inc()
		if wait == nil {
			wait = time.NewTimer(f.limits.Timeout)
			defer wait.Stop()
		}
		select {
		case in := <-p.idle:
			f.stats.hotStarts.Inc()
			return in, nil
		case <-f.freed:
		case <-p.done:
		case <-wait.C:
			return nil, fmt.Errorf("function %q: %w (%d instances, limit %d; raise the function's max_instances): %w",
				f.name, ErrBusy, f.live.Load(), f.limits.MaxInstances, context.DeadlineExceeded)
		case <-ctx.Done():
			return nil, fmt.Errorf("function %q: %w (%d instances, limit %d; raise the function's max_instances): %w",
				f.name, ErrBusy, f.live.Load(), f.limits.MaxInstances, ctx.Err())
		}
	}
}

// instantiateProfiling makes an instance of p's listener-enabled module, as ordinary ones are
// made of f's code: same snapshot memory, limits and module configuration.
func (f *Function) instantiateProfiling(ctx context.Context, p *profiling) (*instance, error) {
	f.code.hold()
	in, err := f.newInstance(ctx, p.compiled)
	if err != nil {
		return nil, err
	}
	in.prof, in.sampler = p, p.rec.NewSampler()
	f.profLive.Add(1)
	return in, nil
}

// releaseProfiling returns an instance of a profile to the profile's idle pool, or discards
// it once the profile has ended.
func (f *Function) releaseProfiling(in *instance) {
	p := in.prof
	if p.ended.Load() || f.closed.Load() {
		f.discard(in)
		return
	}
	p.idle <- in // never blocks: at most MaxInstances live instances exist
	if p.ended.Load() || f.closed.Load() {
		p.drain(f) // the profile ended, or Close ran, during the send
	}
}

// hold counts one more user of c's compiled modules, for an instance of its profiled module:
// the profile that made that instance holds a use already, so profiled is open.
func (c *code) hold() {
	c.mu.Lock()
	c.users++
	c.mu.Unlock()
}

// useProfiled returns c's listener-enabled module, compiling it first if no profile did yet
// (or it was evicted since), and how long that compile took. It counts the caller as a user
// of c until releaseCode, so neither module is evicted meanwhile.
func (r *Runtime) useProfiled(ctx context.Context, c *code) (wazero.CompiledModule, *profile.Functions, time.Duration, error) {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	c.mu.Lock()
	if c.retired {
		c.mu.Unlock()
		return nil, nil, 0, ErrClosed
	}
	if c.profiled != nil {
		c.users++
		m, fns := c.profiled, c.profFns
		c.mu.Unlock()
		return m, fns, 0, nil
	}
	c.mu.Unlock()
	start := time.Now()
	fns := profile.NewFunctions()
	m, err := c.wz.CompileModule(fns.Context(compileContext(ctx)), c.served)
	took := time.Since(start)
	if err != nil {
		return nil, nil, took, err
	}
	c.mu.Lock()
	if c.retired {
		c.mu.Unlock()
		_ = m.Close(context.Background())
		return nil, nil, took, ErrClosed
	}
	c.profiled, c.profFns = m, fns
	c.users++
	c.lastUse = time.Now()
	c.mu.Unlock()
	r.evictOverBudget() // profiled counts against the code budget too
	return m, fns, took, nil
}
