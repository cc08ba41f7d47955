package ring

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Batching shows in these: completions per wake-up above 1 means one wake of a parked guest
// delivered several completions; batch sizes above 1 mean a provider served several
// submissions together.
var (
	completionsPerWakeup = metrics.GetOrCreatePrometheusHistogramExt(`wisp_ring_completions_per_wakeup`, countBuckets)
	wakeupsTotal         = metrics.GetOrCreateCounter(`wisp_ring_wakeups_total`)
	completionsTotal     = metrics.GetOrCreateCounter(`wisp_ring_completions_total`)
)

// countBuckets are the upper bounds of count histograms: 1, 2, 4, ... 1024.
var countBuckets = metrics.ExponentialBuckets(1, 2, 11)

type providerStats struct {
	batchSize *metrics.PrometheusHistogram
	calls     *metrics.Counter
}

func newProviderStats(name string) *providerStats {
	return &providerStats{
		batchSize: metrics.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`wisp_ring_batch_size{provider=%q}`, name), countBuckets),
		calls:     metrics.GetOrCreateCounter(fmt.Sprintf(`wisp_ring_calls_total{provider=%q}`, name)),
	}
}

// refusedTotal counts refused import calls by code; not-ready polls are the normal end of a
// drain and are not counted.
var refusedTotal = func() (cs [len(codeNames)]*metrics.Counter) {
	for c := range cs {
		if Code(c) != CodeOK && Code(c) != CodeNotReady {
			cs[c] = metrics.GetOrCreateCounter(fmt.Sprintf(`wisp_ring_refused_total{code=%q}`, Code(c).String()))
		}
	}
	return cs
}()

// refuse counts a refused import call by code and returns the i32 the import returns.
func refuse(c Code) int32 {
	if int(c) < len(refusedTotal) && refusedTotal[c] != nil {
		refusedTotal[c].Inc()
	}
	return c.ret()
}
