package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/wispfn/wisp/loadtest"
)

// bencher runs the plan's targets one after the other.
type bencher struct {
	o       *Options
	rep     *Report
	taskset string
	workDir string
}

// measure starts t, loads it (closed loop, then open loop at each rate),
// runs hook while it still serves, stops it, and records the outcome. The
// first target measured is the baseline: its closed-loop maximum sets the
// open-loop rates.
func (b *bencher) measure(ctx context.Context, t Target, hook func(context.Context, *server)) *Outcome {
	out := &Outcome{Name: t.Name, Status: "ok"}
	b.rep.Targets = append(b.rep.Targets, out)
	fail := func(err error) *Outcome {
		out.Status, out.Note = "failed", err.Error()
		if reason, ok := isSkipped(err); ok {
			out.Status, out.Note = "skipped", reason
		}
		b.o.logf("%s: %s: %s", t.Name, out.Status, out.Note)
		return out
	}
	b.o.logf("%s: starting", t.Name)
	s, err := start(ctx, t, b.workDir, b.taskset, b.rep.Machine.ServerCPUs)
	if err != nil {
		return fail(err)
	}
	defer s.stop()

	sc, err := b.load(ctx, s, "closed", 0, 0)
	if err != nil {
		return fail(err)
	}
	out.Scenarios = append(out.Scenarios, sc)
	if len(b.rep.Rates) == 0 {
		b.setRates(sc.Result.RPS)
		if !b.o.Quick {
			b.compareClients(ctx, s)
		}
	}
	for _, rate := range b.rep.Rates {
		sc, err := b.load(ctx, s, "open", rate.Percent, rate.RPS)
		if err != nil {
			return fail(err)
		}
		out.Scenarios = append(out.Scenarios, sc)
	}
	if hook != nil {
		hook(ctx, s)
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	return out
}

func (b *bencher) setRates(max float64) {
	percents := Percents
	if b.o.Quick {
		percents = percents[len(percents)-1:]
	}
	for _, p := range percents {
		b.rep.Rates = append(b.rep.Rates, Rate{Percent: p, RPS: math.Round(max * float64(p) / 100)})
	}
}

// config is the load test of s for a scenario.
func (b *bencher) config(s *server, rate float64) loadtest.Config {
	cfg := loadtest.Config{
		URL:         s.url(),
		Host:        s.t.Host,
		Rate:        rate,
		Warmup:      b.o.Warmup,
		Duration:    b.o.ClosedDuration,
		Connections: b.o.ClosedConnections,
		Client:      b.o.Client,
		BusyPoll:    b.rep.Generator.BusyPoll,
	}
	if rate > 0 {
		cfg.Duration, cfg.Connections = b.o.OpenDuration, b.o.OpenConnections
	}
	return cfg
}

// load runs one scenario against s and measures what else used the CPUs
// meanwhile. When other processes used more than busyMachine cores, it runs
// the scenario again, up to Options.Retries times, and keeps the quietest
// attempt.
func (b *bencher) load(ctx context.Context, s *server, kind string, percent int, rate float64) (*Scenario, error) {
	what := kind + " loop"
	if rate > 0 {
		what = fmt.Sprintf("open loop at %.0f req/s (%d%%)", rate, percent)
	}
	var best *Scenario
	for attempt := 1; attempt <= 1+b.o.Retries; attempt++ {
		sc, err := b.loadOnce(ctx, s, kind, percent, rate, what)
		if err != nil {
			// Nothing answered while other processes held the CPUs says more
			// about them than about the target: try again.
			if sc == nil || sc.OtherCores <= busyMachine || attempt > b.o.Retries || ctx.Err() != nil {
				if best != nil {
					return best, nil
				}
				return sc, err
			}
			b.o.logf("%s: %s: %v while other processes used %.2f cores; again", s.t.Name, what, err, sc.OtherCores)
			continue
		}
		sc.Attempts = attempt
		if best == nil || sc.OtherCores < best.OtherCores {
			best = sc
		}
		if sc.OtherCores <= busyMachine || attempt > b.o.Retries || ctx.Err() != nil {
			break
		}
		b.o.logf("%s: %s: other processes used %.2f cores; again", s.t.Name, what, sc.OtherCores)
	}
	return best, nil
}

func (b *bencher) loadOnce(ctx context.Context, s *server, kind string, percent int, rate float64, what string) (*Scenario, error) {
	b.o.logf("%s: %s…", s.t.Name, what)
	busy0, okBusy := busyCPU()
	srv0, okSrv := s.cpu()
	began := time.Now()
	res, err := b.o.Generate(ctx, b.config(s, rate), b.rep.Machine.ClientCPUs)
	if err != nil {
		return nil, fmt.Errorf("cannot load %s (%s): %w", s.t.Name, what, err)
	}
	wall := time.Since(began).Seconds()
	busy1, okBusy1 := busyCPU()
	srv1, okSrv1 := s.cpu()
	sc := &Scenario{Kind: kind, Percent: percent, Result: res}
	if okSrv && okSrv1 {
		sc.ServerCores = round((srv1 - srv0).Seconds() / wall)
	}
	if okBusy && okBusy1 && okSrv && okSrv1 {
		others := (busy1 - busy0 - (srv1 - srv0)).Seconds() - res.CPU.User - res.CPU.System
		sc.OtherCores = round(math.Max(others/wall, 0))
	}
	b.o.logf("%s: %s: %.0f req/s, p50 %.0fµs p99 %.0fµs p99.9 %.0fµs, %d errors; server %.2f cores, others %.2f",
		s.t.Name, what, res.RPS, res.Latency.P50, res.Latency.P99, res.Latency.P999, res.Errors.Total(), sc.ServerCores, sc.OtherCores)
	if res.Requests == 0 {
		return sc, fmt.Errorf("%s answered no request (%s): errors %+v, %d arrivals never sent", s.t.Name, what, res.Errors, res.Unsent)
	}
	return sc, nil
}

// compareClients runs a short closed loop on the baseline with each of the
// generator's clients: the numbers behind the choice of the default.
func (b *bencher) compareClients(ctx context.Context, s *server) {
	for _, client := range []string{loadtest.ClientEpoll, loadtest.ClientNetConn, loadtest.ClientHertz} {
		cfg := b.config(s, 0)
		cfg.Client, cfg.BusyPoll = client, false
		cfg.Duration = min(cfg.Duration, 3*time.Second)
		res, err := b.o.Generate(ctx, cfg, b.rep.Machine.ClientCPUs)
		if err != nil {
			b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("client comparison: %s: %v", client, err))
			continue
		}
		b.o.logf("native: %s client: %.0f req/s, %.1f µs CPU per request", client, res.RPS, res.CPU.PerRequestUS)
		b.rep.Generator.Clients = append(b.rep.Generator.Clients, res)
	}
}

// cold runs the cold-start scenario against the Wisp server s.
func (b *bencher) cold(ctx context.Context, s *server) {
	c := &Cold{Status: "ok"}
	b.rep.Cold = c
	argv := make([]string, len(b.o.Cold))
	for i, a := range b.o.Cold {
		argv[i] = strings.NewReplacer("{wisp}", b.o.Wisp, "{addr}", s.addr).Replace(a)
	}
	b.o.logf("wisp: cold starts: %s…", strings.Join(argv, " "))
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), s.t.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		c.Status, c.Note = "failed", fmt.Sprintf("%s: %v: %s", strings.Join(argv, " "), err, lastLines(stderr.String(), 3))
		if strings.Contains(stderr.String(), `unknown command "cold"`) || strings.Contains(stderr.String(), "accepts 0 arg") {
			c.Status, c.Note = "skipped", "the cold-start scenario (wisp loadtest cold) is not there yet"
		}
		b.o.logf("wisp: cold starts: %s: %s", c.Status, c.Note)
		return
	}
	var res loadtest.ColdResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		c.Status, c.Note = "failed", fmt.Sprintf("cannot read the cold-start result: %v", err)
		b.o.logf("wisp: cold starts: %s: %s", c.Status, c.Note)
		return
	}
	c.Result = &res
	if res.Latency.Count == 0 {
		c.Status, c.Note = "failed", fmt.Sprintf("no cold start measured (%d errors)", res.Errors)
	} else if res.Errors > 0 {
		c.Note = fmt.Sprintf("%d requests failed", res.Errors)
	}
	b.o.logf("wisp: cold starts: p50 %.0fµs p99 %.0fµs over %d (warm p50 %.0fµs), %d errors",
		res.Latency.P50, res.Latency.P99, res.Latency.Count, res.Warm.P50, res.Errors)
}

// summarize fills Summary and the generator's overhead from the results.
func (r *Report) summarize() {
	s := map[string]float64{}
	for _, t := range r.Targets {
		if c := t.Closed(); c != nil {
			s[t.Name+"_rps"] = c.RPS
		}
		for _, rate := range r.Rates {
			o := t.Open(rate.Percent)
			if o == nil || o.Latency.Count == 0 {
				continue
			}
			at := fmt.Sprintf("_us_at_%dpct", rate.Percent)
			s[t.Name+"_p50"+at] = o.Latency.P50
			s[t.Name+"_p99"+at] = o.Latency.P99
			s[t.Name+"_p999"+at] = o.Latency.P999
		}
	}
	for _, rate := range r.Rates {
		s[fmt.Sprintf("rate_%dpct", rate.Percent)] = rate.RPS
	}
	if n, w := s["native_rps"], s["wisp_rps"]; n > 0 && w > 0 {
		s["ratio_rps"] = w / n
	}
	if k, w := s["workerd_rps"], s["wisp_rps"]; k > 0 && w > 0 {
		s["wisp_workerd_ratio_rps"] = w / k
	}
	if r.Cold != nil && r.Cold.Result != nil && r.Cold.Result.Latency.Count > 0 {
		s["cold_p50_us"] = r.Cold.Result.Latency.P50
		s["cold_p99_us"] = r.Cold.Result.Latency.P99
	}
	if n := r.Target("native"); n != nil {
		if c := n.Closed(); c != nil {
			r.Generator.CPUPerRequestUS = round(c.CPU.PerRequestUS)
		}
		if len(r.Rates) > 0 {
			if o := n.Open(r.Rates[len(r.Rates)-1].Percent); o != nil && o.Lag != nil {
				r.Generator.LagP50US, r.Generator.LagP99US = o.Lag.P50, o.Lag.P99
			}
		}
	}
	r.Summary = s
}
