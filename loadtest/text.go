package loadtest

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteText writes r for a terminal: what was loaded, throughput, errors,
// and the latency percentiles.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := "closed loop"
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop at %.0f req/s", r.Rate)
	}
	fmt.Fprintf(&b, "%s: %s, %d connections, %s client, %.1fs\n", r.URL, mode, r.Connections, r.Client, r.Seconds)
	fmt.Fprintf(&b, "  requests  %d (%.0f req/s)", r.Requests, r.RPS)
	classes := make([]string, 0, len(r.Status))
	for k := range r.Status {
		classes = append(classes, k)
	}
	sort.Strings(classes)
	for _, k := range classes {
		fmt.Fprintf(&b, "  %s=%d", k, r.Status[k])
	}
	b.WriteString("\n")
	if e := r.Errors; e.Total() > 0 || r.Unsent > 0 {
		fmt.Fprintf(&b, "  errors    connect=%d timeout=%d io=%d status=%d  unsent=%d\n",
			e.Connect, e.Timeout, e.IO, e.Status, r.Unsent)
	}
	row := func(name string, l Latency) {
		fmt.Fprintf(&b, "  %-8s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", name,
			fmtUS(l.P50), fmtUS(l.P90), fmtUS(l.P99), fmtUS(l.P999), fmtUS(l.Max))
	}
	row("latency", r.Latency)
	if r.Lag != nil {
		row("service", r.Service)
		row("lag", *r.Lag)
	}
	fmt.Fprintf(&b, "  cpu       %.2f µs/request, %.0f%% of a core\n", r.CPU.PerRequestUS, 100*r.CPU.Utilization)
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtUS formats microseconds with a unit that keeps three digits or so.
func fmtUS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%7.2fs ", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%7.2fms", v/1e3)
	default:
		return fmt.Sprintf("%7.1fµs", v)
	}
}
