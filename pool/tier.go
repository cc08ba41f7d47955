package pool

import (
	"context"
	"runtime"
	"sort"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

type compiledModule = wazero.CompiledModule

var (
	diskLoads       = metrics.NewCounter(`wisp_pool_disk_loads_total`)
	diskLoadSeconds = metrics.NewPrometheusHistogramExt(`wisp_pool_disk_load_seconds`, metrics.ExponentialBuckets(1e-3, 2, 16))
	evictions       = metrics.NewCounter(`wisp_pool_code_evictions_total`)
	residentCode    = metrics.NewGauge(`wisp_pool_resident_code_bytes`, nil)
)

// tier says where an instance's code came from.
type tier uint8

const (
	tierCold tier = iota // compiled code resident: instantiate only
	tierDisk             // compiled code evicted: reloaded from the file compilation cache first
)

// compiledBytesPerWasmByte estimates resident compiled code from module size: measured with
// wazero v1.12 on Go guests, a 2.8 MiB module costs ~26 MiB of RSS once compiled.
const compiledBytesPerWasmByte = 9

// residentBytes estimates the memory of c's compiled modules: the one instances are made of,
// and its listener-enabled copy once a profile made one. Callers hold c.mu.
func (c *code) residentBytes() int64 {
	n := int64(0)
	if c.compiled != nil {
		n++
	}
	if c.profiled != nil {
		n++
	}
	return n * int64(len(c.served)) * compiledBytesPerWasmByte
}

// closeCompiledLocked closes c's compiled modules (evicted, or c closed). Callers hold c.mu.
func (c *code) closeCompiledLocked() {
	if c.compiled != nil {
		_ = c.compiled.Close(context.Background())
		c.compiled = nil
	}
	if c.profiled != nil {
		_ = c.profiled.Close(context.Background())
		c.profiled, c.profFns = nil, nil
	}
}

// compileContext lets wazero compile a module's functions on every CPU the process may use:
// a deploy waits for its compile, and the request that reloads evicted code too.
func compileContext(ctx context.Context) context.Context {
	return experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
}

// useCode returns c's compiled module for a new instance, recompiling it (a file compilation
// cache hit) if it was evicted, and counts the instance as a user so it is not evicted under it.
func (r *Runtime) useCode(ctx context.Context, c *code) (compiledModule, tier, error) {
	m, t, err := c.use(ctx)
	if t == tierDisk && err == nil {
		r.evictOverBudget() // after c.mu is released: eviction locks every code
	}
	return m, t, err
}

func (c *code) use(ctx context.Context) (compiledModule, tier, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := tierCold
	if c.compiled == nil {
		if c.retired {
			return nil, t, ErrClosed
		}
		start := time.Now()
		m, err := c.wz.CompileModule(compileContext(ctx), c.served)
		if err != nil {
			return nil, tierDisk, err
		}
		c.compiled = m
		t = tierDisk
		diskLoads.Inc()
		diskLoadSeconds.UpdateDuration(start)
	}
	c.users++
	c.lastUse = time.Now()
	return c.compiled, t, nil
}

// releaseCode drops an instance's hold on c; retired code is closed with its last instance.
// It reports whether c is now unused (and so evictable).
func (r *Runtime) releaseCode(c *code) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users--
	c.lastUse = time.Now()
	if c.users == 0 && c.retired {
		c.closeLocked()
	}
	return c.users == 0
}

// shareCode returns the code in use under key, counting one more function using it, or nil.
func (r *Runtime) shareCode(key string) *code {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.codes[key]
	if c != nil {
		c.refs++
	}
	return c
}

// registerCode makes freshly prepared code shareable and returns the code the caller should
// use: c, or the code another Compile of the same key registered first (c is then closed).
func (r *Runtime) registerCode(c *code) *code {
	r.mu.Lock()
	if old := r.codes[c.key]; old != nil {
		old.refs++
		r.mu.Unlock()
		c.close()
		return old
	}
	c.refs = 1
	r.codes[c.key] = c
	r.mu.Unlock()
	return c
}

// dropCode ends one function's use of c. The last one retires it: no new function shares it,
// and it is closed with its last instance.
func (r *Runtime) dropCode(c *code) {
	r.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last && r.codes[c.key] == c {
		delete(r.codes, c.key)
	}
	r.mu.Unlock()
	if last {
		r.retireCode(c)
	}
}

// retireCode marks c as no longer needed; it is closed now or when its last instance goes.
func (r *Runtime) retireCode(c *code) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retired = true
	if c.users == 0 {
		c.closeLocked()
	}
}

// close releases c at once; for code that never served (a failed Compile).
func (c *code) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retired = true
	c.closeLocked()
}

func (c *code) closeLocked() {
	c.closeCompiledLocked()
	if c.image != nil {
		_ = c.image.Close()
		c.image = nil
	}
}

func (r *Runtime) track(f *Function) {
	r.mu.Lock()
	r.fns[f] = struct{}{}
	r.mu.Unlock()
	r.evictOverBudget()
}

func (r *Runtime) untrack(f *Function) {
	r.mu.Lock()
	delete(r.fns, f)
	r.mu.Unlock()
}

// evictOverBudget closes the compiled code of the least recently used functions that have no
// live instance until the resident estimate fits Config.CodeBudget. Their next instance reloads
// the code from the file compilation cache (the disk tier).
func (r *Runtime) evictOverBudget() {
	r.mu.Lock()
	codes := make([]*code, 0, len(r.codes))
	for _, c := range r.codes {
		codes = append(codes, c)
	}
	r.mu.Unlock()
	type cand struct {
		c    *code
		last time.Time
		size int64
	}
	var total int64
	var cands []cand
	for _, c := range codes {
		c.mu.Lock()
		if size := c.residentBytes(); size > 0 {
			total += size
			if c.users == 0 {
				cands = append(cands, cand{c, c.lastUse, size})
			}
		}
		c.mu.Unlock()
	}
	residentCode.Set(float64(total))
	if total <= r.budget {
		return
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].last.Before(cands[j].last) })
	for _, cd := range cands {
		if total <= r.budget {
			break
		}
		cd.c.mu.Lock()
		if size := cd.c.residentBytes(); cd.c.users == 0 && size > 0 {
			cd.c.closeCompiledLocked()
			total -= size
			evictions.Inc()
		}
		cd.c.mu.Unlock()
	}
	residentCode.Set(float64(total))
}

// reap closes instances idle for longer than Config.IdleTimeout, so a function nobody calls
// costs no instance memory and its code becomes evictable. It runs until ctx ends.
func (r *Runtime) reap(ctx context.Context) {
	defer close(r.reaperDone)
	tick := time.NewTicker(max(r.idleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cutoff := nanotime() - int64(r.idleTimeout)
		r.mu.Lock()
		fns := make([]*Function, 0, len(r.fns))
		for f := range r.fns {
			fns = append(fns, f)
		}
		r.mu.Unlock()
		for _, f := range fns {
			f.reapIdle(cutoff) // a function left without instances becomes evictable in discard
		}
	}
}

// reapIdle discards idle instances last used before cutoff and returns how many.
func (f *Function) reapIdle(cutoff int64) int {
	var keep []*instance
	n := 0
	for {
		var in *instance
		select {
		case in = <-f.idle:
		default:
		}
		if in == nil {
			break
		}
		if in.lastUsed < cutoff {
			f.discard(in)
			f.stats.reaped.Inc()
			n++
		} else {
			keep = append(keep, in)
		}
	}
	for _, in := range keep {
		f.putIdle(in)
	}
	return n
}

// epoch anchors nanotime; time.Since reads the monotonic clock.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }
