package report

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/loadtest"
)

// nativeBin is bench/nativehello, built once for the tests that start it.
var nativeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "report-test-")
	if err != nil {
		panic(err)
	}
	nativeBin = filepath.Join(dir, "nativehello")
	build := exec.Command("go", "build", "-o", nativeBin, "../nativehello")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		panic("cannot build nativehello: " + err.Error())
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func quickOptions(t *testing.T) Options {
	return Options{
		Quick:          true,
		Native:         nativeBin,
		Warmup:         100 * time.Millisecond,
		ClosedDuration: 400 * time.Millisecond,
		OpenDuration:   400 * time.Millisecond,
		Retries:        -1,
		WorkDir:        t.TempDir(),
	}
}

// TestRunQuick runs the quick plan against the real native server: a
// Wisp-less run measures the baseline, skips Wisp with a note, and writes
// JSON with the headline keys.
func TestRunQuick(t *testing.T) {
	var progress bytes.Buffer
	o := quickOptions(t)
	o.Progress = &progress
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	native := rep.Target("native")
	if native == nil || native.Status != "ok" || native.Closed() == nil || native.Open(50) == nil {
		t.Fatalf("native: got %+v", native)
	}
	if w := rep.Target("wisp"); w == nil || w.Status != "skipped" || !strings.Contains(w.Note, "no wisp binary") {
		t.Fatalf("wisp: got %+v; want skipped", w)
	}
	if len(rep.Rates) != 1 || rep.Rates[0].Percent != 50 || rep.Rates[0].RPS <= 0 {
		t.Fatalf("got rates %+v; want 50%% of native's maximum", rep.Rates)
	}
	if o := native.Open(50); o.Rate != rep.Rates[0].RPS || o.Mode != "open" {
		t.Fatalf("open loop ran at %v req/s (%s); want %v", o.Rate, o.Mode, rep.Rates[0].RPS)
	}

	dir := t.TempDir()
	paths, err := rep.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || filepath.Base(paths[0]) != "quick.json" {
		t.Fatalf("wrote %v; want quick.json only", paths)
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"native_rps", "native_p99_us_at_50pct", "rate_50pct", "machine", "targets", "generator"} {
		if _, ok := doc[key]; !ok {
			t.Errorf("JSON has no %q", key)
		}
	}
	if _, ok := doc["wisp_rps"]; ok {
		t.Errorf("JSON has wisp_rps without a Wisp run")
	}
	if doc["native_rps"].(float64) <= 0 {
		t.Errorf("native_rps = %v", doc["native_rps"])
	}
}

func TestTargetFailures(t *testing.T) {
	tests := []struct {
		name   string
		target Target
		want   string
	}{
		{"exits at once", Target{Name: "bad", Command: []string{"sh", "-c", "echo broken config >&2; exit 3"}, Ready: "/"}, "exited before it was ready"},
		{"never ready", Target{Name: "slow", Command: []string{"sleep", "30"}, Ready: "/", StartTimeout: 300 * time.Millisecond}, "not ready"},
		{"wrong answer", Target{Name: "other", Command: []string{nativeBin, "-listen", "{addr}"}, Ready: "/", Path: "/", Expect: "Hello WASM"}, `want 200 and "Hello WASM"`},
		{"setup fails", Target{Name: "setup", Command: []string{nativeBin, "-listen", "{addr}"}, Ready: "/", Setup: [][]string{{"false"}}}, `cannot run "false"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := quickOptions(t)
			o.defaults()
			b := &bencher{o: &o, rep: &Report{}, workDir: o.WorkDir}
			out := b.measure(context.Background(), tt.target, nil)
			if out.Status != "failed" || !strings.Contains(out.Note, tt.want) {
				t.Fatalf("got %s: %s; want failed: …%s…", out.Status, out.Note, tt.want)
			}
		})
	}
}

func TestCold(t *testing.T) {
	rec := loadtest.NewRecorder()
	for i := range 100 {
		rec.Record(time.Duration(200+i) * time.Microsecond)
	}
	res, err := json.Marshal(&loadtest.ColdResult{Latency: rec.Latency(), Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cmd    []string
		status string
		note   string
	}{
		{"result", []string{"sh", "-c", "test \"$1\" = http://127.0.0.1:1 && cat <<'EOF'\n" + string(res) + "\nEOF", "sh", "http://{addr}"}, "ok", ""},
		{"not there yet", []string{"sh", "-c", `echo 'Error: unknown command "cold" for "wisp loadtest"' >&2; exit 1`}, "skipped", "not there yet"},
		{"fails", []string{"sh", "-c", "echo no functions deployed >&2; exit 1"}, "failed", "no functions deployed"},
		{"not JSON", []string{"echo", "hello"}, "failed", "cannot read the cold-start result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Cold: tt.cmd, Wisp: "wisp"}
			o.defaults()
			b := &bencher{o: &o, rep: &Report{}}
			b.cold(context.Background(), &server{addr: "127.0.0.1:1"})
			c := b.rep.Cold
			if c.Status != tt.status || !strings.Contains(c.Note, tt.note) {
				t.Fatalf("got %s: %s; want %s: …%s…", c.Status, c.Note, tt.status, tt.note)
			}
			if tt.status == "ok" && (c.Result == nil || c.Result.Latency.Count != 100) {
				t.Fatalf("got result %+v; want 100 cold starts", c.Result)
			}
		})
	}
}

// fakeResult is a plausible loadtest.Result with latencies around us.
func fakeResult(rps, us float64, open bool) *loadtest.Result {
	rec := loadtest.NewRecorder()
	for i := range 1000 {
		rec.Record(time.Duration(us*(1+float64(i%100)/50)) * time.Microsecond)
	}
	res := &loadtest.Result{Client: "epoll", RPS: rps, Requests: 1000, Latency: rec.Latency(), Service: rec.Latency(), Mode: "closed"}
	if open {
		l := rec.Latency()
		res.Mode, res.Lag = "open", &l
	}
	res.CPU.PerRequestUS = 9
	return res
}

func fakeReport() *Report {
	rep := &Report{Version: 1, Machine: Machine{CPUModel: "Test CPU", CPUs: 2, Pinning: "taskset: servers on CPU 0, load generator on CPU 1"},
		Rates: []Rate{{25, 20000}, {50, 40000}}}
	rep.Generator.Client = "epoll"
	for _, t := range []struct {
		name string
		rps  float64
		us   float64
	}{{"native", 80000, 50}, {"wisp", 40000, 120}, {"workerd", 20000, 300}} {
		rep.Targets = append(rep.Targets, &Outcome{Name: t.name, Status: "ok", Scenarios: []*Scenario{
			{Kind: "closed", Result: fakeResult(t.rps, t.us, false)},
			{Kind: "open", Percent: 25, Result: fakeResult(20000, t.us, true)},
			{Kind: "open", Percent: 50, Result: fakeResult(40000, t.us*2, true), OtherCores: 0.5},
		}})
	}
	rep.Cold = &Cold{Status: "ok", Result: &loadtest.ColdResult{Latency: fakeResult(0, 250, false).Latency, Warm: fakeResult(0, 60, false).Latency}}
	rep.Cold.Result.Server.ColdStarts, rep.Cold.Result.Server.InstantiateMean = 1000, 190
	rep.Micro = &Micro{Status: "ok", Packages: []string{"p"}, Benchmarks: []Benchmark{{Package: "p", Name: "BenchmarkX-2", Runs: 5, NsPerOp: 1234}}, raw: []byte("BenchmarkX-2 1 1234 ns/op\n")}
	rep.summarize()
	return rep
}

func TestSummary(t *testing.T) {
	s := fakeReport().Summary
	want := map[string]float64{"native_rps": 80000, "wisp_rps": 40000, "workerd_rps": 20000, "ratio_rps": 0.5, "wisp_workerd_ratio_rps": 2, "rate_50pct": 40000}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %v; want %v", k, s[k], v)
		}
	}
	for _, k := range []string{"wisp_p99_us_at_50pct", "native_p50_us_at_25pct", "workerd_p999_us_at_50pct", "cold_p50_us", "cold_p99_us"} {
		if s[k] <= 0 {
			t.Errorf("%s = %v; want a latency", k, s[k])
		}
	}
}

func TestRender(t *testing.T) {
	rep := fakeReport()
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"native", "80,000", "wisp / native", "throughput 0.50×", "wisp / workerd", "throughput 2.00×",
		"cold start", "the same functions warm", "instantiate mean 190µs", "p99.9 @50%", "other processes used 0.50 cores"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}

	dir := t.TempDir()
	paths, err := rep.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("wrote %v; want micro.txt, latest.json, latest.html", paths)
	}
	page, err := os.ReadFile(filepath.Join(dir, "latest.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	if n := strings.Count(html, "<svg"); n != 4 {
		t.Errorf("page has %d plots; want 4 (throughput, two percentile curves, cold starts)", n)
	}
	if n := strings.Count(html, "<polyline"); n != 6 {
		t.Errorf("page has %d curves; want 3 targets × 2 rates", n)
	}
	for _, banned := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(html, banned) {
			t.Errorf("page has %q: it must be self-contained", banned)
		}
	}
	if strings.Count(html, "http://") != strings.Count(html, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Errorf("page refers to an outside resource")
	}
	if !strings.Contains(html, "BenchmarkX-2") {
		t.Errorf("page lacks the microbenchmarks")
	}
	var doc map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err := json.Unmarshal(b, &doc); err != nil || doc["ratio_rps"] != 0.5 || doc["micro"].(map[string]any)["file"] != "micro.txt" {
		t.Fatalf("latest.json: %v, ratio_rps %v", err, doc["ratio_rps"])
	}
}

func TestParseBench(t *testing.T) {
	out := []byte(`goos: linux
goarch: amd64
pkg: github.com/wispfn/wisp/pool
cpu: AMD EPYC
BenchmarkGet-2   	 1000000	      1000 ns/op	      64 B/op	       1 allocs/op
BenchmarkGet-2   	 1000000	      3000 ns/op	      64 B/op	       1 allocs/op
BenchmarkGet-2   	 1000000	      2000 ns/op	      64 B/op	       1 allocs/op
BenchmarkPut/small-2         	  500000	       250.5 ns/op
PASS
ok  	github.com/wispfn/wisp/pool	3.1s
pkg: github.com/wispfn/wisp/ring
BenchmarkGet-2   	 2000000	       10 ns/op	 100.00 MB/s	       0 B/op	       0 allocs/op
--- FAIL: BenchmarkBroken
FAIL	github.com/wispfn/wisp/ring	0.1s
`)
	got := parseBench(out)
	want := []Benchmark{
		{Package: "github.com/wispfn/wisp/pool", Name: "BenchmarkGet-2", Runs: 3, NsPerOp: 2000, BytesPerOp: 64, AllocsPerOp: 1},
		{Package: "github.com/wispfn/wisp/pool", Name: "BenchmarkPut/small-2", Runs: 1, NsPerOp: 250.5},
		{Package: "github.com/wispfn/wisp/ring", Name: "BenchmarkGet-2", Runs: 1, NsPerOp: 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("benchmark %d: got %+v; want %+v", i, got[i], want[i])
		}
	}
}

func TestRound(t *testing.T) {
	f := func(in, want float64) {
		t.Helper()
		if got := round(in); got != want {
			t.Errorf("round(%v) = %v; want %v", in, got, want)
		}
	}
	f(0, 0)
	f(123456, 123500)
	f(0.123456, 0.1235)
	f(52.2234, 52.22)
	f(-1.23456, -1.235)
}
