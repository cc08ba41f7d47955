package loadtest

import (
	"encoding/json"
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one Run measured. Latencies are in microseconds. It
// marshals to JSON as is; Summary gives the few numbers a table needs.
type Result struct {
	URL         string  `json:"url"`
	Client      string  `json:"client"`
	Mode        string  `json:"mode"`           // "open" or "closed"
	Rate        float64 `json:"rate,omitempty"` // requested arrivals/s, open loop
	Connections int     `json:"connections"`
	BusyPoll    bool    `json:"busy_poll,omitempty"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	// Seconds is the measured span: from the end of the warm-up to the last
	// response.
	Seconds float64 `json:"seconds"`
	// Requests counts the responses received, whatever their status.
	Requests int64 `json:"requests"`
	// RPS is Requests / Seconds.
	RPS    float64          `json:"rps"`
	Status map[string]int64 `json:"status"` // responses by class: "2xx", "5xx"…
	Errors Errors           `json:"errors"`
	// Unsent counts, in open loop, the arrivals scheduled inside the
	// measured span that could not be sent before it ended because every
	// connection was still waiting: the target (or the generator) could
	// not keep up with Rate.
	Unsent int64 `json:"unsent"`
	// Latency is measured from the intended send time in open loop (a stall
	// delays every request scheduled behind it and shows here: no
	// coordinated omission), and from the actual send time in closed loop.
	Latency Latency `json:"latency"`
	// Service is measured from the actual send time, in both modes.
	Service Latency `json:"service"`
	// Lag is, in open loop, how late each request left against its
	// intended send time: the generator's own timing error plus any wait
	// for a busy connection.
	Lag *Latency `json:"lag,omitempty"`
	// CPU is the process's CPU time during the run. When the process does
	// nothing but generate load (wisp loadtest), it is the generator's
	// overhead.
	CPU CPU `json:"cpu"`
}

// Errors counts failed requests by kind. A failed request has no latency.
type Errors struct {
	Connect int64 `json:"connect"` // cannot connect
	Timeout int64 `json:"timeout"` // no complete response within Config.Timeout
	IO      int64 `json:"io"`      // connection closed or reset, malformed response
	Status  int64 `json:"status"`  // responses with status 400 or above
}

// Total is the number of failed requests of any kind.
func (e Errors) Total() int64 { return e.Connect + e.Timeout + e.IO + e.Status }

// MarshalJSON adds the total to the counts.
func (e Errors) MarshalJSON() ([]byte, error) {
	type plain Errors
	return json.Marshal(struct {
		plain
		Total int64 `json:"total"`
	}{plain(e), e.Total()})
}

// CPU is the user and system CPU time the process spent during the run
// (warm-up included), in seconds, and per request (failed ones included)
// in microseconds.
type CPU struct {
	User           float64 `json:"user_s"`
	System         float64 `json:"system_s"`
	PerRequestUS   float64 `json:"us_per_request"`
	Utilization    float64 `json:"utilization"` // CPU seconds per wall second
	wallSecondsRun float64
}

// Latency summarizes a latency distribution, in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	// Curve is the latency at a fixed set of percentiles (CurvePercentiles),
	// enough to plot a percentile curve.
	Curve []Point `json:"curve,omitempty"`
	// Histogram counts latencies in log-spaced buckets, ten per decade,
	// from the smallest to the largest non-empty one.
	Histogram []Bucket `json:"histogram,omitempty"`
}

// Point is the latency (µs) at a percentile (0 to 100).
type Point struct {
	Percentile float64 `json:"p"`
	US         float64 `json:"us"`
}

// Bucket counts the latencies in [FromUS, ToUS).
type Bucket struct {
	FromUS float64 `json:"from_us"`
	ToUS   float64 `json:"to_us"`
	Count  int64   `json:"count"`
}

// CurvePercentiles are the percentiles of Latency.Curve: dense near the
// tail, where a percentile plot's log "nines" axis spends its width.
var CurvePercentiles = []float64{
	0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96.25, 97.5, 98.25,
	99, 99.25, 99.5, 99.75, 99.9, 99.95, 99.975, 99.99, 99.995, 99.999, 100,
}

// Histogram bounds: 1 ns to 1 hour, three significant digits.
const (
	histMin     = 1
	histMax     = int64(time.Hour)
	histSigFigs = 3
)

// Recorder collects latencies into a high-dynamic-range histogram (1 ns to
// 1 hour, 0.1% precision) and summarizes them as a Latency. It is safe for
// concurrent use. Scenarios that time requests themselves (cold starts)
// use it to report in the same shape as Run.
type Recorder struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{h: newHist()}
}

// Record adds one latency; values beyond an hour count as an hour.
func (r *Recorder) Record(d time.Duration) {
	r.mu.Lock()
	record(r.h, d)
	r.mu.Unlock()
}

// Latency summarizes what was recorded so far.
func (r *Recorder) Latency() Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(r.h)
}

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

func record(h *hdrhistogram.Histogram, d time.Duration) {
	v := int64(d)
	if v < histMin {
		v = histMin
	} else if v > histMax {
		v = histMax
	}
	_ = h.RecordValue(v) // cannot fail: v is within the histogram's range
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

func summarize(h *hdrhistogram.Histogram) Latency {
	n := h.TotalCount()
	if n == 0 {
		return Latency{}
	}
	vals := h.ValueAtPercentilesSlice(CurvePercentiles)
	curve := make([]Point, len(vals))
	for i, v := range vals {
		curve[i] = Point{Percentile: CurvePercentiles[i], US: us(v)}
	}
	return Latency{
		Count:     n,
		Min:       us(h.Min()),
		Mean:      math.Round(h.Mean()) / 1e3,
		P50:       us(h.ValueAtQuantile(50)),
		P90:       us(h.ValueAtQuantile(90)),
		P99:       us(h.ValueAtQuantile(99)),
		P999:      us(h.ValueAtQuantile(99.9)),
		Max:       us(h.Max()),
		Curve:     curve,
		Histogram: logBuckets(h),
	}
}

// logBuckets regroups the histogram's own buckets into ten per decade, every
// bucket between the smallest and the largest non-empty one included, so a
// plot's x axis is even.
func logBuckets(h *hdrhistogram.Histogram) []Bucket {
	counts := map[int]int64{}
	lo, hi := math.MaxInt, math.MinInt
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		k := int(math.Floor(10 * math.Log10(float64(max(bar.From, 1)))))
		counts[k] += bar.Count
		lo, hi = min(lo, k), max(hi, k)
	}
	if len(counts) == 0 {
		return nil
	}
	edge := func(k int) float64 { return math.Pow(10, float64(k)/10) / 1e3 } // µs
	out := make([]Bucket, 0, hi-lo+1)
	for k := lo; k <= hi; k++ {
		out = append(out, Bucket{FromUS: edge(k), ToUS: edge(k + 1), Count: counts[k]})
	}
	return out
}

// recorder is Run's collector: one lock per request for three histograms
// and the counters, so workers share it without per-worker histograms.
type recorder struct {
	mu       sync.Mutex
	latency  *hdrhistogram.Histogram
	service  *hdrhistogram.Histogram
	lag      *hdrhistogram.Histogram
	status   [6]int64 // by status class; [0] for anything outside 1xx-5xx
	errors   Errors
	unsent   int64
	last     time.Time
	measured int64
	limit    int64
}

func newRecorder(limit int64) *recorder {
	return &recorder{latency: newHist(), service: newHist(), lag: newHist(), limit: limit}
}

// add records one request scheduled at intended, sent at sent and finished
// at done. It reports false once the request limit is reached.
func (r *recorder) add(intended, sent, done time.Time, status int, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit > 0 && r.measured >= r.limit {
		return false
	}
	r.measured++
	if done.After(r.last) {
		r.last = done
	}
	if err != nil {
		switch kindOf(err) {
		case kindConnect:
			r.errors.Connect++
		case kindTimeout:
			r.errors.Timeout++
		default:
			r.errors.IO++
		}
		return r.limit == 0 || r.measured < r.limit
	}
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	r.status[class]++
	if status >= 400 {
		r.errors.Status++
	}
	record(r.latency, done.Sub(intended))
	record(r.service, done.Sub(sent))
	record(r.lag, sent.Sub(intended))
	return r.limit == 0 || r.measured < r.limit
}

func (r *recorder) addUnsent(n int64) {
	r.mu.Lock()
	r.unsent += n
	r.mu.Unlock()
}

// result summarizes the run; all counts every request, warm-up included,
// for the CPU spent per request.
func (r *recorder) result(t *target, from time.Time, cpu CPU, all int64) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{
		URL:         t.URL,
		Client:      t.Client,
		Mode:        "closed",
		Connections: t.Connections,
		BusyPoll:    t.BusyPoll,
		Status:      map[string]int64{},
		Errors:      r.errors,
		Unsent:      r.unsent,
		Latency:     summarize(r.latency),
		Service:     summarize(r.service),
	}
	res.Service.Histogram = nil // the curve says enough; keep the JSON small
	if t.open {
		res.Mode = "open"
		res.Rate = t.Rate
		lag := summarize(r.lag)
		lag.Histogram = nil
		res.Lag = &lag
	}
	for class, n := range r.status {
		if n == 0 {
			continue
		}
		name := "other"
		if class > 0 {
			name = string(rune('0'+class)) + "xx"
		}
		res.Status[name] = n
	}
	for _, n := range r.status {
		res.Requests += n
	}
	if r.last.After(from) {
		res.Seconds = r.last.Sub(from).Seconds()
		res.RPS = float64(res.Requests) / res.Seconds
	}
	if all > 0 {
		cpu.PerRequestUS = (cpu.User + cpu.System) * 1e6 / float64(all)
	}
	if cpu.wallSecondsRun > 0 {
		cpu.Utilization = (cpu.User + cpu.System) / cpu.wallSecondsRun
	}
	res.CPU = cpu
	return res
}
