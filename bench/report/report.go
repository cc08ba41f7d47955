// Package report runs make bench: the Go microbenchmarks, then each
// target server (a native Hertz baseline, Wisp, workerd) started, loaded in
// closed loop for its maximum throughput and in open loop at fixed rates
// for its latency, then stopped; and it renders the result as a table,
// JSON and a self-contained HTML page.
package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/wispfn/wisp/loadtest"
)

// Options says what to run. A zero field means its documented default.
type Options struct {
	// Quick runs the reduced plan: no microbenchmarks, no workerd, no cold
	// starts, 3-second runs, the 50% rate only.
	Quick bool

	// Native is the baseline server binary (bench/nativehello). Required.
	Native string
	// Wisp is the wisp binary; empty skips Wisp with a note.
	Wisp string
	// Example is the function Wisp serves (default examples/hello), built
	// with `wisp build`.
	Example string
	// Workerd is the workerd binary and WorkerdConfig its config (default
	// bench/workerd/config.capnp); an empty Workerd skips it with a note.
	Workerd       string
	WorkerdConfig string
	// Cold is the cold-start scenario, run while Wisp serves: a command that
	// prints a loadtest.ColdResult as JSON, with {wisp} and {addr}
	// substituted (default: wisp loadtest cold --addr http://{addr} --json).
	// Its latency histogram is the report's cold-start histogram.
	Cold []string

	// Micro runs the Go microbenchmarks of MicroPackages (default: the
	// packages under ModuleDir that have benchmarks) MicroCount times each
	// (default 5) for MicroBenchtime (default 300ms), into OutDir/micro.txt.
	Micro          bool
	MicroPackages  []string
	MicroCount     int
	MicroBenchtime string
	MicroTimeout   time.Duration // default 4 minutes
	ModuleDir      string        // default "."

	// Load shape: warm-up, closed-loop and open-loop durations (defaults
	// 1s, 10s, 10s; quick 0.5s, 3s, 3s) and connections (32 and 64).
	Warmup            time.Duration
	ClosedDuration    time.Duration
	OpenDuration      time.Duration
	ClosedConnections int
	OpenConnections   int
	Client            string // loadtest client (default loadtest.DefaultClient)
	// Retries is how many times a scenario runs again when other processes
	// used the CPUs meanwhile (default 1, quick 2; -1 for none); the
	// quietest attempt is kept.
	Retries  int
	BusyPoll bool // loadtest.Config.BusyPoll, when pinned

	// NoPin runs servers and generator on any CPU, even where taskset could
	// split them.
	NoPin bool
	// Generate runs one load test. The default runs loadtest.Run in this
	// process; cmd/report runs it in a child pinned to the client CPUs.
	Generate func(ctx context.Context, cfg loadtest.Config, cpus string) (*loadtest.Result, error)

	// WorkDir holds the servers' scratch directories and logs (default: a
	// new temporary directory, removed at the end unless a target failed).
	WorkDir string
	// Progress receives a line per step (default: discarded).
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Example == "" {
		o.Example = "examples/hello"
	}
	if o.WorkerdConfig == "" {
		o.WorkerdConfig = "bench/workerd/config.capnp"
	}
	if o.Cold == nil {
		o.Cold = []string{"{wisp}", "loadtest", "cold", "--addr", "http://{addr}", "--json"}
	}
	if o.MicroCount == 0 {
		o.MicroCount = 5
	}
	if o.MicroBenchtime == "" {
		o.MicroBenchtime = "300ms"
	}
	if o.MicroTimeout == 0 {
		o.MicroTimeout = 4 * time.Minute
	}
	if o.ModuleDir == "" {
		o.ModuleDir = "."
	}
	quick := func(full, reduced time.Duration) time.Duration {
		if o.Quick {
			return reduced
		}
		return full
	}
	if o.Warmup == 0 {
		o.Warmup = quick(time.Second, 500*time.Millisecond)
	}
	if o.ClosedDuration == 0 {
		o.ClosedDuration = quick(10*time.Second, 3*time.Second)
	}
	if o.OpenDuration == 0 {
		o.OpenDuration = quick(10*time.Second, 3*time.Second)
	}
	switch {
	case o.Retries == 0 && o.Quick:
		o.Retries = 2
	case o.Retries == 0:
		o.Retries = 1
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.ClosedConnections == 0 {
		o.ClosedConnections = 32
	}
	if o.OpenConnections == 0 {
		o.OpenConnections = 64
	}
	if o.Generate == nil {
		o.Generate = func(ctx context.Context, cfg loadtest.Config, _ string) (*loadtest.Result, error) {
			return loadtest.Run(ctx, cfg)
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Percents are the open-loop rates, in percent of the baseline's maximum
// throughput; Quick runs only the last.
var Percents = []int{25, 50}

// Report is what one make bench measured. It marshals to JSON with the
// headline numbers (Summary) as top-level keys.
type Report struct {
	Version   int        `json:"version"`
	Time      time.Time  `json:"time"`
	Quick     bool       `json:"quick"`
	Machine   Machine    `json:"machine"`
	Generator Generator  `json:"generator"`
	Rates     []Rate     `json:"rates"`
	Targets   []*Outcome `json:"targets"`
	Cold      *Cold      `json:"cold,omitempty"`
	Micro     *Micro     `json:"micro,omitempty"`
	Notes     []string   `json:"notes,omitempty"`
	// Summary holds the headline numbers, keyed as in the JSON:
	// native_rps, wisp_rps, workerd_rps; ratio_rps (Wisp/native) and
	// wisp_workerd_ratio_rps; NAME_p50_us_at_25pct, NAME_p99_us_at_50pct,
	// NAME_p999_us_at_50pct…; cold_p50_us and cold_p99_us. A number that
	// could not be measured is absent.
	Summary map[string]float64 `json:"-"`
	Seconds float64            `json:"seconds"` // wall time of the whole run
}

// Rate is one open-loop rate.
type Rate struct {
	Percent int     `json:"percent"` // of the baseline's maximum
	RPS     float64 `json:"rps"`
}

// Generator describes the load generator's settings and its measured
// overhead against the native baseline.
type Generator struct {
	Client      string `json:"client"`
	BusyPoll    bool   `json:"busy_poll"`
	Connections struct {
		Closed int `json:"closed"`
		Open   int `json:"open"`
	} `json:"connections"`
	// CPUPerRequestUS is the generator's CPU time per request in the
	// baseline's closed-loop run.
	CPUPerRequestUS float64 `json:"cpu_us_per_request"`
	// LagP50US and LagP99US are how late requests left against their
	// intended send time at the baseline's highest open-loop rate: the
	// generator's own share of open-loop latency.
	LagP50US float64 `json:"lag_p50_us"`
	LagP99US float64 `json:"lag_p99_us"`
	// Clients compares the generator's HTTP clients on the baseline,
	// closed loop (full runs only).
	Clients []*loadtest.Result `json:"clients,omitempty"`
}

// Outcome is one target's results.
type Outcome struct {
	Name      string      `json:"name"`
	Status    string      `json:"status"` // "ok", "skipped" or "failed"
	Note      string      `json:"note,omitempty"`
	Scenarios []*Scenario `json:"scenarios,omitempty"`
}

// Scenario is one load test of a target.
type Scenario struct {
	Kind    string           `json:"kind"`              // "closed" or "open"
	Percent int              `json:"percent,omitempty"` // open loop: of the baseline's maximum
	Result  *loadtest.Result `json:"result"`
	// ServerCores is the server's CPU use (cores) and OtherCores the rest
	// of the machine's, generator excluded: what else ran during the test.
	ServerCores float64 `json:"server_cores"`
	OtherCores  float64 `json:"other_cores"`
	// Attempts is how many times the scenario ran to find a quiet moment.
	Attempts int `json:"attempts"`
}

// Cold is the cold-start scenario's result.
type Cold struct {
	Status string               `json:"status"`
	Note   string               `json:"note,omitempty"`
	Result *loadtest.ColdResult `json:"result,omitempty"`
}

// MarshalJSON writes the report with Summary's keys at the top level.
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	b, err := json.Marshal((*plain)(r))
	if err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range r.Summary {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		m[k], _ = json.Marshal(round(v))
	}
	return json.Marshal(m)
}

// round keeps four significant digits: enough for any number a benchmark
// can stand behind.
func round(v float64) float64 {
	if v == 0 {
		return 0
	}
	scale := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*scale) / scale
}

// Target returns the outcome of the target with this name, or nil.
func (r *Report) Target(name string) *Outcome {
	for _, t := range r.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Closed returns o's closed-loop result, or nil.
func (o *Outcome) Closed() *loadtest.Result {
	for _, s := range o.Scenarios {
		if s.Kind == "closed" {
			return s.Result
		}
	}
	return nil
}

// Open returns o's open-loop result at percent, or nil.
func (o *Outcome) Open(percent int) *loadtest.Result {
	for _, s := range o.Scenarios {
		if s.Kind == "open" && s.Percent == percent {
			return s.Result
		}
	}
	return nil
}

func (o *Options) logf(format string, args ...any) {
	fmt.Fprintf(o.Progress, format+"\n", args...)
}

// Run runs the benchmark plan and returns the report. It fails only when
// the baseline cannot be measured; any other target that cannot run is
// reported as skipped or failed, with a note.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	began := time.Now()
	machine, taskset := probeMachine(!o.NoPin)
	rep := &Report{Version: 1, Time: began.UTC().Round(time.Second), Quick: o.Quick, Machine: machine}
	rep.Generator.Client = o.Client
	if rep.Generator.Client == "" {
		rep.Generator.Client = loadtest.DefaultClient
	}
	rep.Generator.BusyPoll = o.BusyPoll && machine.Pinned
	rep.Generator.Connections.Closed = o.ClosedConnections
	rep.Generator.Connections.Open = o.OpenConnections
	if o.BusyPoll && !machine.Pinned {
		rep.Notes = append(rep.Notes, "busy polling off: the generator is not pinned to CPUs of its own")
	}
	o.logf("machine: %s, %d CPUs; %s; load average %s", machine.CPUModel, machine.CPUs, machine.Pinning, machine.LoadAvg)

	workDir := o.WorkDir
	if workDir == "" {
		dir, err := os.MkdirTemp("", "wisp-bench-")
		if err != nil {
			return nil, fmt.Errorf("cannot create a work directory: %w", err)
		}
		workDir = dir
		defer func() {
			if !rep.failed() {
				_ = os.RemoveAll(dir)
			}
		}()
	}

	if o.Micro && !o.Quick {
		o.logf("microbenchmarks…")
		rep.Micro = runMicro(ctx, &o)
		o.logf("microbenchmarks: %s", rep.Micro.Status)
	}

	b := &bencher{o: &o, rep: rep, taskset: taskset, workDir: workDir}
	native := b.measure(ctx, nativeTarget(&o), nil)
	closed := native.Closed()
	if native.Status != "ok" || closed == nil || closed.RPS <= 0 {
		rep.Seconds = time.Since(began).Seconds()
		rep.summarize()
		return rep, fmt.Errorf("cannot measure the native baseline: %s", native.Note)
	}
	if o.Wisp == "" {
		rep.Targets = append(rep.Targets, &Outcome{Name: "wisp", Status: "skipped", Note: "no wisp binary given (make build)"})
	} else {
		var cold func(context.Context, *server)
		if !o.Quick {
			cold = b.cold
		}
		b.measure(ctx, wispTarget(&o), cold)
	}
	if rep.Cold == nil && !o.Quick {
		rep.Cold = &Cold{Status: "skipped", Note: "Wisp did not run"}
	}
	if !o.Quick {
		if o.Workerd == "" {
			rep.Targets = append(rep.Targets, &Outcome{Name: "workerd", Status: "skipped",
				Note: "workerd not installed (make bench-peers installs it into .peers/)"})
		} else {
			b.measure(ctx, workerdTarget(&o), nil)
		}
	}
	rep.Seconds = time.Since(began).Seconds()
	rep.summarize()
	return rep, ctx.Err()
}

func (r *Report) failed() bool {
	for _, t := range r.Targets {
		if t.Status == "failed" {
			return true
		}
	}
	return false
}

// nativeTarget is the baseline: bench/nativehello, doing nothing but answer.
func nativeTarget(o *Options) Target {
	return Target{
		Name:    "native",
		Command: []string{o.Native, "-listen", "{addr}"},
		Ready:   "/",
		Path:    "/",
		Expect:  "Hello",
	}
}

// wispTarget is Wisp all-in-one serving the Go hello example, built and
// deployed before the load starts.
func wispTarget(o *Options) Target {
	token := "bench-" + fmt.Sprint(time.Now().UnixNano())
	return Target{
		Name:    "wisp",
		Prepare: [][]string{{o.Wisp, "build", o.Example, "-o", "{dir}/hello.wasm"}},
		Command: []string{o.Wisp, "serve", "--listen", "{addr}", "--data", "{dir}/data", "--log-level", "warn"},
		Env:     []string{"WISP_TOKEN=" + token},
		Ready:   "/_wisp/healthz",
		Setup:   [][]string{{o.Wisp, "deploy", "--addr", "http://{addr}", "hello", "{dir}/hello.wasm"}},
		Path:    "/hello/",
		Expect:  "Hello WASM from Golang!",
	}
}

// workerdTarget is workerd serving a JavaScript hello.
func workerdTarget(o *Options) Target {
	config, err := filepath.Abs(o.WorkerdConfig)
	if err != nil {
		config = o.WorkerdConfig
	}
	return Target{
		Name:    "workerd",
		Command: []string{o.Workerd, "serve", config, "--socket-addr", "http={addr}"},
		Ready:   "/",
		Path:    "/",
		Expect:  "Hello",
	}
}
