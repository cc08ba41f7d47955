package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/loadtest"
)

// newColdCmd returns `wisp loadtest cold`: the cold-start scenario against a running gateway.
func newColdCmd() *cobra.Command {
	var cf clientFlags
	var cfg loadtest.ColdConfig
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "cold",
		Short: "Measure cold starts: deploy N functions, send exactly one request to each",
		Long: `Deploy N functions (the Go hello guest carried inside this binary; with --distinct each
one a different module, so they share no compiled code and no snapshot), then send exactly one
request to each at a fixed open-loop rate: each is the first request to a function with no live
instance, its code already compiled on the node. Latency is measured at the client from each
request's intended send time. The same functions are then hit again for a warm baseline, and
the server's own phase metrics are read from /metrics. The functions are removed afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			cfg.Addr, cfg.Token = c.addr, c.token
			if !jsonOut {
				cfg.Progress = os.Stderr
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := loadtest.RunCold(ctx, cfg)
			if err != nil {
				return err
			}
			if jsonOut {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printCold(res)
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.IntVar(&cfg.Functions, "functions", 300, "functions to deploy; each gets exactly one cold request")
	fl.BoolVar(&cfg.Distinct, "distinct", false, "make every function a different module (each deploy compiles)")
	fl.Float64Var(&cfg.Rate, "rate", 100, "open-loop arrival rate of the requests, per second")
	fl.IntVar(&cfg.Connections, "connections", 8, "kept-alive connections carrying the requests")
	fl.BoolVar(&cfg.WarmUp, "warmup", false, "deploy with warmup=true (one synthetic request before each snapshot)")
	fl.BoolVar(&cfg.BusyPoll, "busy-poll", false, "spin on the connection while a request is in flight instead of sleeping: leaves the client's wake-up out of the latencies; pin the generator with taskset")
	fl.BoolVar(&cfg.Keep, "keep", false, "leave the functions deployed")
	fl.BoolVar(&jsonOut, "json", false, "print the result as one JSON object")
	return cmd
}

func printCold(r *loadtest.ColdResult) {
	fmt.Printf("cold starts: %d functions (distinct %v, warmup %v, busy poll %v), one request each at %.0f/s; deploy took %.1fs\n",
		r.Config.Functions, r.Config.Distinct, r.Config.WarmUp, r.Config.BusyPoll, r.Config.Rate, r.DeploySeconds)
	fmt.Printf("%-6s %7s %9s %9s %9s %9s %9s\n", "", "count", "p50", "p90", "p99", "p99.9", "max")
	for _, row := range []struct {
		name string
		l    loadtest.Latency
	}{{"cold", r.Latency}, {"warm", r.Warm}} {
		fmt.Printf("%-6s %7d %7.0fµs %7.0fµs %7.0fµs %7.0fµs %7.0fµs\n", row.name, row.l.Count, row.l.P50, row.l.P90, row.l.P99, row.l.P999, row.l.Max)
	}
	s, w := r.Server, r.ServerWarm
	fmt.Printf("server, cold: starts cold %d, hot %d, disk %d; instantiate mean %.0fµs (p99 ≤ %.0fµs), run mean %.0fµs, request mean %.0fµs (p99 ≤ %.0fµs)\n",
		s.ColdStarts, s.HotStarts, s.DiskStarts, s.InstantiateMean, s.InstantiateP99, s.RunMean, s.RequestMean, s.RequestP99)
	fmt.Printf("server, warm: starts cold %d, hot %d, disk %d; run mean %.0fµs, request mean %.0fµs (p99 ≤ %.0fµs)\n",
		w.ColdStarts, w.HotStarts, w.DiskStarts, w.RunMean, w.RequestMean, w.RequestP99)
	fmt.Printf("generator send lag p99 %.0fµs (included in the latencies above)\n", r.SendLagP99)
	if r.Errors > 0 {
		fmt.Printf("errors: %d requests failed or answered non-200\n", r.Errors)
	}
}
