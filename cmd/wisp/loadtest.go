package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/loadtest"
)

// newLoadtestCmd returns `wisp loadtest`: HTTP load against one URL, open or
// closed loop, latency from HdrHistogram, as text or JSON.
func newLoadtestCmd() *cobra.Command {
	var (
		cfg     loadtest.Config
		addr    string
		path    string
		headers []string
		body    string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Load a URL and report throughput and latency percentiles",
		Long: `Load a URL over HTTP/1.1 kept-alive connections and report throughput and
latency percentiles (HdrHistogram).

With --rate, requests arrive at a constant rate (open loop) and latency is
measured from each request's intended send time, so a stall delays every
request scheduled behind it and shows in the tail. Without it, every
connection sends as fast as responses come back (closed loop): the target's
maximum throughput.`,
		Example: `  wisp loadtest --url http://127.0.0.1:8080/hello/ --duration 10s
  wisp loadtest --path /hello/ --rate 5000 --connections 64 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.URL != "" && cmd.Flags().Changed("addr") {
				return errors.New("cannot use both --url and --addr: pick one")
			}
			if cfg.URL == "" {
				cfg.URL = strings.TrimSuffix(addr, "/")
				if !strings.Contains(cfg.URL, "://") {
					cfg.URL = "http://" + cfg.URL
				}
				if !strings.HasPrefix(path, "/") {
					path = "/" + path
				}
				cfg.URL += path
			}
			if len(headers) > 0 {
				cfg.Headers = map[string]string{}
				for _, h := range headers {
					k, v, ok := strings.Cut(h, ":")
					if !ok {
						return fmt.Errorf("cannot use header %q: want \"Name: value\"", h)
					}
					cfg.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
			}
			if body != "" {
				cfg.Body = []byte(body)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := loadtest.Run(ctx, cfg)
			if res == nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if werr := enc.Encode(res); werr != nil {
					return werr
				}
			} else if werr := res.WriteText(out); werr != nil {
				return werr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "target URL, http://host:port/path (instead of --addr and --path)")
	defAddr := os.Getenv("WISP_ADDR")
	if defAddr == "" {
		defAddr = "http://127.0.0.1:8080"
	}
	f.StringVar(&addr, "addr", defAddr, "target address, http://host:port or host:port, with --path ($WISP_ADDR)")
	f.StringVar(&path, "path", "/", "request path with --addr")
	f.StringVar(&cfg.Host, "host", "", "Host header (default: the URL's host)")
	f.StringVar(&cfg.Method, "method", "GET", "request method")
	f.StringArrayVarP(&headers, "header", "H", nil, "extra request header \"Name: value\" (repeatable)")
	f.StringVar(&body, "body", "", "request body")
	f.Float64Var(&cfg.Rate, "rate", 0, "arrivals per second, open loop; 0 = closed loop (maximum throughput)")
	f.DurationVarP(&cfg.Duration, "duration", "d", loadtest.DefaultDuration, "how long to measure")
	f.DurationVar(&cfg.Warmup, "warmup", time.Second, "load before measuring, discarded")
	f.IntVarP(&cfg.Connections, "connections", "c", loadtest.DefaultConnections, "concurrent connections")
	f.DurationVar(&cfg.Timeout, "timeout", loadtest.DefaultTimeout, "per-request timeout, connect included")
	f.Int64Var(&cfg.Requests, "requests", 0, "stop after this many measured requests (0 = no limit)")
	f.StringVar(&cfg.Client, "client", "", "HTTP client: epoll (hand-rolled, event loop; Linux), netconn (hand-rolled, goroutine per connection) or hertz (Hertz on netpoll)")
	f.BoolVar(&cfg.BusyPoll, "busy-poll", false, "spin instead of sleeping between events (epoll client): microsecond timing, one whole CPU; pin the generator with taskset")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}
