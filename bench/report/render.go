package report

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/wispfn/wisp/loadtest"
)

// busyMachine is the CPU use by other processes (in cores) above which a
// scenario's numbers are flagged as noisy.
const busyMachine = 0.25

// WriteFiles writes the report into dir: latest.json, latest.html and
// micro.txt (the microbenchmarks' output, in benchstat format), or
// quick.json for a quick run. It returns the paths written.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create %q: %w", dir, err)
	}
	var written []string
	write := func(name string, fill func(io.Writer) error) error {
		path := filepath.Join(dir, name)
		tmp := path + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return fmt.Errorf("cannot write %q: %w", path, err)
		}
		err = fill(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("cannot write %q: %w", path, err)
		}
		written = append(written, path)
		return nil
	}
	if r.Micro != nil && r.Micro.raw != nil {
		if err := write("micro.txt", func(w io.Writer) error { _, err := w.Write(r.Micro.raw); return err }); err != nil {
			return written, err
		}
		r.Micro.File = "micro.txt"
	}
	name := "latest.json"
	if r.Quick {
		name = "quick.json"
	}
	if err := write(name, r.WriteJSON); err != nil {
		return written, err
	}
	if !r.Quick {
		if err := write("latest.html", r.WriteHTML); err != nil {
			return written, err
		}
	}
	return written, nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// fmtUS formats a latency in microseconds with a readable unit.
func fmtUS(v float64) string {
	switch {
	case v <= 0:
		return "—"
	case v >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.2f", v/1e6), ".00") + "s"
	case v >= 1e4:
		return fmt.Sprintf("%.0fms", v/1e3)
	case v >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "ms"
	default:
		return fmt.Sprintf("%.0fµs", v)
	}
}

// fmtCount formats a count with thousands separators.
func fmtCount(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// saturated reports why an open-loop result does not measure the target at
// its rate, or "".
func saturated(res *loadtest.Result) string {
	if res == nil {
		return ""
	}
	scheduled := float64(res.Requests + res.Errors.Total() - res.Errors.Status + res.Unsent)
	switch {
	case res.Unsent > 0 && float64(res.Unsent) > 0.01*scheduled:
		return fmt.Sprintf("could not keep up: %d of %.0f arrivals never sent", res.Unsent, scheduled)
	case res.Errors.Total() > 0:
		return fmt.Sprintf("%d errors", res.Errors.Total())
	}
	return ""
}

// WriteTable writes the report as the plain-text table make bench prints.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Wisp bench: %s, %d CPUs, %s, %s, kernel %s\n", m.CPUModel, m.CPUs, m.OS, m.Go, m.Kernel)
	fmt.Fprintf(&b, "  %s; load average %s at the start\n", m.Pinning, m.LoadAvg)
	if len(r.Rates) > 0 {
		parts := make([]string, len(r.Rates))
		for i, rate := range r.Rates {
			parts[i] = fmt.Sprintf("%d%% = %s req/s", rate.Percent, fmtCount(rate.RPS))
		}
		fmt.Fprintf(&b, "  open-loop rates: %s of native's closed-loop maximum\n", strings.Join(parts, ", "))
	}
	b.WriteString("\n")
	cell := func(v string) { fmt.Fprintf(&b, "%11s", v) }
	fmt.Fprintf(&b, "%-8s", "target")
	cell("max req/s")
	for _, rate := range r.Rates {
		cell(fmt.Sprintf("p50 @%d%%", rate.Percent))
		cell(fmt.Sprintf("p99 @%d%%", rate.Percent))
		cell(fmt.Sprintf("p99.9 @%d%%", rate.Percent))
	}
	b.WriteString("\n")
	var marks []string
	for _, t := range r.Targets {
		if t.Status != "ok" {
			continue
		}
		fmt.Fprintf(&b, "%-8s", t.Name)
		if c := t.Closed(); c != nil {
			cell(fmtCount(c.RPS))
		} else {
			cell("—")
		}
		for _, rate := range r.Rates {
			o := t.Open(rate.Percent)
			if o == nil {
				cell("—")
				cell("—")
				cell("—")
				continue
			}
			mark := " "
			if why := saturated(o); why != "" {
				mark = "*"
				marks = append(marks, fmt.Sprintf("* %s at %d%%: %s", t.Name, rate.Percent, why))
			}
			cell(fmtUS(o.Latency.P50) + mark)
			cell(fmtUS(o.Latency.P99) + mark)
			cell(fmtUS(o.Latency.P999) + mark)
		}
		b.WriteString("\n")
	}
	for _, t := range r.Targets {
		if t.Status != "ok" {
			fmt.Fprintf(&b, "%s: %s: %s\n", t.Name, t.Status, t.Note)
		}
	}
	for _, mk := range marks {
		b.WriteString(mk + "\n")
	}
	b.WriteString("\n")
	s := r.Summary
	last := 0
	if len(r.Rates) > 0 {
		last = r.Rates[len(r.Rates)-1].Percent
	}
	ratio := func(name, other string) {
		rps, ok := s["ratio_rps"]
		if other == "workerd" {
			rps, ok = s["wisp_workerd_ratio_rps"]
		}
		if !ok {
			fmt.Fprintf(&b, "%-16s —\n", name)
			return
		}
		line := fmt.Sprintf("%-16s throughput %.2f×", name, rps)
		key := fmt.Sprintf("_p99_us_at_%dpct", last)
		wp, op := s["wisp"+key], s[other+key]
		switch w, o := r.Target("wisp"), r.Target(other); {
		case w == nil || o == nil || wp <= 0 || op <= 0:
		case saturated(w.Open(last)) != "" || saturated(o.Open(last)) != "":
			line += fmt.Sprintf(", p99 @%d%%: not comparable (*)", last)
		default:
			line += fmt.Sprintf(", p99 @%d%% %.2f×", last, wp/op)
		}
		b.WriteString(line + "\n")
	}
	ratio("wisp / native", "native")
	ratio("wisp / workerd", "workerd")
	switch c := r.Cold; {
	case c == nil:
	case c.Result != nil && c.Result.Latency.Count > 0:
		l, w := c.Result.Latency, c.Result.Warm
		fmt.Fprintf(&b, "%-16s p50 %s  p99 %s  (%d cold starts; the same functions warm: p50 %s  p99 %s)\n",
			"cold start", fmtUS(l.P50), fmtUS(l.P99), l.Count, fmtUS(w.P50), fmtUS(w.P99))
		if sp := c.Result.Server; sp.ColdStarts > 0 {
			fmt.Fprintf(&b, "%-16s server side, cold: instantiate mean %s, run mean %s, request mean %s; warm: request mean %s\n", "",
				fmtUS(sp.InstantiateMean), fmtUS(sp.RunMean), fmtUS(sp.RequestMean), fmtUS(c.Result.ServerWarm.RequestMean))
		}
	default:
		fmt.Fprintf(&b, "%-16s %s: %s\n", "cold start", c.Status, c.Note)
	}
	g := r.Generator
	busy := ""
	if g.BusyPoll {
		busy = ", busy polling"
	}
	fmt.Fprintf(&b, "%-16s %s client%s: %.1f µs CPU per request on native (closed loop); send lag p50 %s p99 %s at %d%%\n",
		"generator", g.Client, busy, g.CPUPerRequestUS, fmtUS(g.LagP50US), fmtUS(g.LagP99US), last)
	if len(g.Clients) > 0 {
		parts := make([]string, len(g.Clients))
		for i, c := range g.Clients {
			parts[i] = fmt.Sprintf("%s %s req/s %.1f µs/req", c.Client, fmtCount(c.RPS), c.CPU.PerRequestUS)
		}
		fmt.Fprintf(&b, "%-16s clients on native, closed loop: %s\n", "", strings.Join(parts, "; "))
	}
	if mi := r.Micro; mi != nil {
		fmt.Fprintf(&b, "%-16s %s: %d benchmarks in %d packages", "microbenchmarks", mi.Status, len(mi.Benchmarks), len(mi.Packages))
		if mi.File != "" {
			fmt.Fprintf(&b, " (%s, benchstat format)", mi.File)
		}
		if mi.Note != "" {
			fmt.Fprintf(&b, "; %s", mi.Note)
		}
		b.WriteString("\n")
	}
	for _, n := range r.noisy() {
		fmt.Fprintf(&b, "warning: %s\n", n)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "(%.0f s)\n", r.Seconds)
	_, err := io.WriteString(w, b.String())
	return err
}

// noisy lists the scenarios during which other processes used the CPUs.
func (r *Report) noisy() []string {
	var out []string
	for _, t := range r.Targets {
		for _, sc := range t.Scenarios {
			if sc.OtherCores > busyMachine {
				what := "closed loop"
				if sc.Kind == "open" {
					what = fmt.Sprintf("open loop at %d%%", sc.Percent)
				}
				out = append(out, fmt.Sprintf("%s %s: other processes used %.2f cores meanwhile (best of %d attempts); its numbers are noisy",
					t.Name, what, sc.OtherCores, max(sc.Attempts, 1)))
			}
		}
	}
	return out
}

// Colors of the targets in the plots.
var colors = map[string]string{"native": "#4c78a8", "wisp": "#f58518", "workerd": "#54a24b"}

func color(name string) string {
	if c, ok := colors[name]; ok {
		return c
	}
	return "#888888"
}

// WriteHTML writes the report as one self-contained page: tables and
// inline SVG plots, no script, no external resource.
func (r *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Wisp bench</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.note{color:#666}.warn{color:#b45309}svg{display:block;margin:.5em 0}
svg text{font:11px system-ui,sans-serif;fill:#333}
</style></head><body>
<h1>Wisp bench</h1>
`)
	m := r.Machine
	fmt.Fprintf(&b, "<p>%s · %d CPUs · %s · %s · kernel %s<br>%s · load average %s at the start · %s · %.0f s</p>\n",
		esc(m.CPUModel), m.CPUs, esc(m.OS), esc(m.Go), esc(m.Kernel), esc(m.Pinning), esc(m.LoadAvg), r.Time.Format("2006-01-02 15:04 MST"), r.Seconds)

	b.WriteString("<h2>Summary</h2>\n<pre>")
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		return err
	}
	b.WriteString(esc(table.String()))
	b.WriteString("</pre>\n")

	b.WriteString("<h2>Throughput, closed loop</h2>\n")
	b.WriteString(r.throughputSVG())

	for _, rate := range r.Rates {
		fmt.Fprintf(&b, "<h2>Latency at %s req/s (%d%% of native's maximum), open loop</h2>\n", fmtCount(rate.RPS), rate.Percent)
		b.WriteString(`<p class="note">Measured from each request's intended send time: a stall delays every request scheduled behind it and shows in the tail.</p>` + "\n")
		var curves []curve
		for _, t := range r.Targets {
			if o := t.Open(rate.Percent); o != nil && len(o.Latency.Curve) > 0 {
				c := curve{name: t.Name, points: o.Latency.Curve}
				if saturated(o) != "" {
					c.mark = "*"
				}
				curves = append(curves, c)
			}
		}
		b.WriteString(percentileSVG(curves))
	}

	b.WriteString("<h2>Cold starts</h2>\n")
	switch c := r.Cold; {
	case c != nil && c.Result != nil && len(c.Result.Latency.Histogram) > 0:
		l, w := c.Result.Latency, c.Result.Warm
		fmt.Fprintf(&b, "<p>%d cold starts, one request to each of %d freshly deployed functions at %.0f req/s, measured from the intended send time: p50 %s, p99 %s, p99.9 %s, max %s. The same functions warm: p50 %s, p99 %s.</p>\n",
			l.Count, c.Result.Config.Functions, c.Result.Config.Rate, fmtUS(l.P50), fmtUS(l.P99), fmtUS(l.P999), fmtUS(l.Max), fmtUS(w.P50), fmtUS(w.P99))
		b.WriteString(histogramSVG(l.Histogram, color("wisp")))
	case c != nil:
		fmt.Fprintf(&b, "<p class=\"note\">%s: %s</p>\n", esc(c.Status), esc(c.Note))
	default:
		b.WriteString("<p class=\"note\">not run</p>\n")
	}

	if mi := r.Micro; mi != nil {
		b.WriteString("<h2>Microbenchmarks</h2>\n")
		fmt.Fprintf(&b, "<p class=\"note\">%s", esc(mi.Status))
		if mi.Note != "" {
			fmt.Fprintf(&b, ": %s", esc(mi.Note))
		}
		if mi.File != "" {
			fmt.Fprintf(&b, " · raw output in %s (benchstat format)", esc(mi.File))
		}
		b.WriteString("</p>\n")
		if len(mi.Benchmarks) > 0 {
			b.WriteString("<table><tr><th>package</th><th>benchmark</th><th>ns/op</th><th>B/op</th><th>allocs/op</th><th>runs</th></tr>\n")
			for _, bm := range mi.Benchmarks {
				fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td></tr>\n",
					esc(bm.Package), esc(bm.Name), fmtNum(bm.NsPerOp), fmtNum(bm.BytesPerOp), fmtNum(bm.AllocsPerOp), bm.Runs)
			}
			b.WriteString("</table>\n")
		}
	}

	if notes := append(r.noisy(), r.Notes...); len(notes) > 0 {
		b.WriteString("<h2>Notes</h2>\n<ul>\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "<li>%s</li>\n", esc(n))
		}
		b.WriteString("</ul>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmtCount(v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// Plot geometry, in SVG user units.
const (
	plotW, plotH          = 760, 320
	marginL, marginR      = 70, 120
	marginT, marginB      = 15, 40
	innerW, innerH        = plotW - marginL - marginR, plotH - marginT - marginB
	maxNines              = 5.0 // 99.999%
	maxX                  = maxNines + 0.7
	throughputBarH        = 26
	throughputLabelMargin = 80
)

func (r *Report) throughputSVG() string {
	type bar struct {
		name string
		rps  float64
	}
	var bars []bar
	top := 0.0
	for _, t := range r.Targets {
		if c := t.Closed(); c != nil {
			bars = append(bars, bar{t.Name, c.RPS})
			top = math.Max(top, c.RPS)
		}
	}
	if len(bars) == 0 {
		return `<p class="note">no throughput measured</p>` + "\n"
	}
	h := len(bars)*(throughputBarH+8) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`+"\n", plotW, h, plotW, h)
	width := float64(plotW - throughputLabelMargin - 140)
	for i, br := range bars {
		y := 5 + i*(throughputBarH+8)
		wd := width * br.rps / top
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, throughputLabelMargin-8, y+throughputBarH/2+4, html.EscapeString(br.name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, throughputLabelMargin, y, wd, throughputBarH, color(br.name))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s req/s</text>`+"\n", float64(throughputLabelMargin)+wd+6, y+throughputBarH/2+4, fmtCount(br.rps))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

type curve struct {
	name   string
	mark   string // "*": the target could not keep up with the rate
	points []loadtest.Point
}

// nines maps a percentile to the x axis of a percentile plot: 90% is 1,
// 99% is 2, 99.9% is 3; 100% (the maximum) sits just past maxNines.
func nines(p float64) float64 {
	if p >= 100 {
		return maxX
	}
	return math.Min(-math.Log10(1-p/100), maxNines)
}

// logRange returns decade bounds covering the values.
func logRange(vals []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return 1, 10
	}
	lo, hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi
}

// ticks returns the axis marks between the decades lo and hi (log10 of
// µs): every decade, and 2 and 5 in between when there are few decades.
func ticks(lo, hi float64) []float64 {
	var out []float64
	for d := lo; d <= hi; d++ {
		out = append(out, math.Pow(10, d))
		if hi-lo <= 3 && d < hi {
			out = append(out, 2*math.Pow(10, d), 5*math.Pow(10, d))
		}
	}
	return out
}

func percentileSVG(curves []curve) string {
	if len(curves) == 0 {
		return `<p class="note">no target measured at this rate</p>` + "\n"
	}
	var vals []float64
	for _, c := range curves {
		for _, p := range c.points {
			vals = append(vals, p.US)
		}
	}
	lo, hi := logRange(vals)
	x := func(p float64) float64 { return marginL + nines(p)/maxX*innerW }
	y := func(us float64) float64 {
		v := math.Log10(math.Max(us, math.Pow(10, lo)))
		return marginT + innerH - (v-lo)/(hi-lo)*innerH
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`+"\n", plotW, plotH, plotW, plotH)
	for _, v := range ticks(lo, hi) {
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, marginL, marginL+innerW, yy, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginL-6, yy+4, fmtUS(v))
	}
	for _, t := range []struct {
		p     float64
		label string
	}{{0, "0%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {99.999, "99.999%"}, {100, "max"}} {
		xx := x(t.p)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`, xx, xx, marginT, marginT+innerH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xx, marginT+innerH+16, t.label)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">percentile</text>`+"\n", marginL+innerW/2, plotH-4)
	marked := false
	for i, c := range curves {
		var pts []string
		for _, p := range c.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Percentile), y(p.US)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color(c.name), strings.Join(pts, " "))
		ly := marginT + 14 + i*18
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>`, plotW-marginR+14, plotW-marginR+34, ly-4, ly-4, color(c.name))
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", plotW-marginR+40, ly, html.EscapeString(c.name+c.mark))
		marked = marked || c.mark != ""
	}
	if marked {
		fmt.Fprintf(&b, `<text x="%d" y="%d">* could not keep up</text>`+"\n", plotW-marginR+14, marginT+14+len(curves)*18+6)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func histogramSVG(buckets []loadtest.Bucket, fill string) string {
	if len(buckets) == 0 {
		return ""
	}
	var top int64
	vals := []float64{buckets[0].FromUS, buckets[len(buckets)-1].ToUS}
	for _, bk := range buckets {
		top = max(top, bk.Count)
	}
	lo, hi := logRange(vals)
	x := func(us float64) float64 { return marginL + (math.Log10(us)-lo)/(hi-lo)*innerW }
	y := func(n int64) float64 { return marginT + innerH - float64(n)/float64(top)*innerH }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`+"\n", plotW, plotH, plotW, plotH)
	for _, v := range ticks(lo, hi) {
		xx := x(v)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`, xx, xx, marginT, marginT+innerH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xx, marginT+innerH+16, fmtUS(v))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%d</text>`, marginL-6, marginT+8, top)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">0</text>`+"\n", marginL-6, marginT+innerH)
	fmt.Fprintf(&b, `<text x="14" y="%d" text-anchor="middle" transform="rotate(-90 14 %d)">cold starts</text>`+"\n", marginT+innerH/2, marginT+innerH/2)
	for _, bk := range buckets {
		if bk.Count == 0 {
			continue
		}
		x0, x1 := x(bk.FromUS), x(bk.ToUS)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s–%s: %d</title></rect>`+"\n",
			x0, y(bk.Count), math.Max(x1-x0-1, 1), marginT+innerH-y(bk.Count), fill, fmtUS(bk.FromUS), fmtUS(bk.ToUS), bk.Count)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">latency (log scale)</text>`+"\n", marginL+innerW/2, plotH-4)
	b.WriteString("</svg>\n")
	return b.String()
}
