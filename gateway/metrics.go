package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/pool"
)

// fnStats are the gateway's metrics of one function name, shared by all its versions.
type fnStats struct {
	name     string
	set      *metrics.Set
	duration *metrics.PrometheusHistogram
	byStatus [600]atomic.Pointer[metrics.Counter] // created on first use of each status
}

func newFnStats(name string) *fnStats {
	s := &fnStats{name: name, set: metrics.NewSet()}
	s.duration = s.set.NewPrometheusHistogramExt(fmt.Sprintf(`wisp_request_duration_seconds{function=%q}`, name), pool.LatencyBuckets)
	metrics.RegisterSet(s.set)
	return s
}

// observe counts one request. It does not allocate once a status has been seen.
func (s *fnStats) observe(status int, start time.Time) {
	s.duration.UpdateDuration(start)
	if status < 0 || status >= len(s.byStatus) {
		status = 0
	}
	c := s.byStatus[status].Load()
	if c == nil {
		c = s.set.GetOrCreateCounter(fmt.Sprintf(`wisp_requests_total{function=%q,status="%d"}`, s.name, status))
		s.byStatus[status].Store(c)
	}
	c.Inc()
}

// statsByName hands out one fnStats per function name and forgets it when the function is removed.
type statsByName struct {
	mu sync.Mutex
	m  map[string]*fnStats
}

func (r *statsByName) get(name string) *fnStats {
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

func (r *statsByName) forget(name string) {
	r.mu.Lock()
	s, ok := r.m[name]
	delete(r.m, name)
	r.mu.Unlock()
	if ok {
		metrics.UnregisterSet(s.set, true)
	}
}

var (
	unroutedRequests = metrics.NewCounter(`wisp_gateway_unrouted_requests_total`)
	deploysTotal     = metrics.NewCounter(`wisp_gateway_deploys_total`)
	deployFailures   = metrics.NewCounter(`wisp_gateway_deploy_failures_total`)
)
