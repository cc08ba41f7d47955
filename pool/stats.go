package pool

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// LatencyBuckets are the upper bounds (seconds) of every latency histogram Wisp exports:
// 25 µs doubling up to ~13 s, so sub-millisecond phases are resolved.
var LatencyBuckets = metrics.ExponentialBuckets(25e-6, 2, 20)

// fnStats are the metrics of one function name, shared by all its versions.
type fnStats struct {
	set                *metrics.Set
	hotStarts          *metrics.Counter
	coldStarts         *metrics.Counter
	diskStarts         *metrics.Counter
	reaped             *metrics.Counter
	waits              *metrics.Counter
	liveInstances      atomic.Int64 // exported by a gauge
	compileSeconds     *metrics.PrometheusHistogram
	instantiateSeconds *metrics.PrometheusHistogram
	runSeconds         *metrics.PrometheusHistogram
	faultCounters      map[FaultKind]*metrics.Counter
}

func newFnStats(name string) *fnStats {
	s := &fnStats{set: metrics.NewSet(), faultCounters: map[FaultKind]*metrics.Counter{}}
	l := fmt.Sprintf(`{function=%q}`, name)
	s.hotStarts = s.set.NewCounter(fmt.Sprintf(`wisp_pool_starts_total{function=%q,tier="hot"}`, name))
	s.coldStarts = s.set.NewCounter(fmt.Sprintf(`wisp_pool_starts_total{function=%q,tier="cold"}`, name))
	s.diskStarts = s.set.NewCounter(fmt.Sprintf(`wisp_pool_starts_total{function=%q,tier="disk"}`, name))
	s.reaped = s.set.NewCounter(`wisp_pool_reaped_instances_total` + l)
	s.waits = s.set.NewCounter(`wisp_pool_instance_waits_total` + l)
	s.set.NewGauge(`wisp_pool_live_instances`+l, func() float64 { return float64(s.liveInstances.Load()) })
	s.compileSeconds = s.set.NewPrometheusHistogramExt(`wisp_pool_compile_seconds`+l, metrics.ExponentialBuckets(1e-3, 2, 16))
	s.instantiateSeconds = s.set.NewPrometheusHistogramExt(fmt.Sprintf(`wisp_pool_phase_seconds{function=%q,phase="instantiate"}`, name), LatencyBuckets)
	s.runSeconds = s.set.NewPrometheusHistogramExt(fmt.Sprintf(`wisp_pool_phase_seconds{function=%q,phase="run"}`, name), LatencyBuckets)
	for _, k := range []FaultKind{FaultTrap, FaultPanic, FaultExit, FaultTimeout, FaultOOM, FaultBadResponse} {
		s.faultCounters[k] = s.set.NewCounter(fmt.Sprintf(`wisp_pool_faults_total{function=%q,kind=%q}`, name, k))
	}
	metrics.RegisterSet(s.set)
	return s
}

func (s *fnStats) faults(k FaultKind) *metrics.Counter { return s.faultCounters[k] }

// statsRegistry hands out one fnStats per function name.
type statsRegistry struct {
	mu sync.Mutex
	m  map[string]*fnStats
}

func (r *statsRegistry) get(name string) *fnStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.m[name]; ok {
		return s
	}
	if r.m == nil {
		r.m = map[string]*fnStats{}
	}
	s := newFnStats(name)
	r.m[name] = s
	return s
}

// Forget drops the metrics of a removed function name, so /metrics does not grow with every
// function that ever existed. Versions still running keep updating their (now unexported) stats.
func (r *Runtime) Forget(name string) {
	r.stats.mu.Lock()
	s, ok := r.stats.m[name]
	delete(r.stats.m, name)
	r.stats.mu.Unlock()
	if ok {
		metrics.UnregisterSet(s.set, true)
	}
}
