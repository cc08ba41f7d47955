package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wispfn/wisp/loadtest/guest"
)

// ColdConfig says how to measure cold starts against a running Wisp gateway.
type ColdConfig struct {
	// Addr is the gateway's base URL, "http://127.0.0.1:8080". Required.
	Addr string `json:"addr"`
	// Token is the admin API token. Required.
	Token string `json:"-"`
	// Functions is how many functions to deploy; each gets exactly one cold request (default 300).
	Functions int `json:"functions"`
	// Distinct makes every function a different module, so they share no compiled code and
	// no snapshot: each deploy compiles (seconds for a Go guest) and costs its own memory.
	Distinct bool `json:"distinct"`
	// Rate is the open-loop arrival rate of the cold requests, per second (default 100).
	Rate float64 `json:"rate"`
	// Connections is how many kept-alive connections carry the requests (default 8).
	Connections int `json:"connections"`
	// WarmUp deploys with warmup=true (one synthetic request before each snapshot).
	WarmUp bool `json:"warmup"`
	// BusyPoll makes the client spin on its connection while a request is in flight instead
	// of sleeping until the response arrives: the latencies then leave out the client's own
	// wake-up. It keeps a CPU busy; pin the generator with taskset. Unix only.
	BusyPoll bool `json:"busy_poll,omitempty"`
	// Keep leaves the functions deployed after the run.
	Keep bool `json:"keep,omitempty"`
	// Wasm is the module to deploy; nil means the Go hello guest inside the binary.
	Wasm []byte `json:"-"`
	// Progress, if set, receives one line per phase of the run.
	Progress io.Writer `json:"-"`
}

// ColdResult is what a cold-start run measured. Latencies are microseconds at the client, from
// each request's intended send time.
type ColdResult struct {
	Config  ColdConfig `json:"config"`
	Count   int64      `json:"count"`
	ColdP50 float64    `json:"cold_p50_us"`
	ColdP99 float64    `json:"cold_p99_us"`
	WarmP50 float64    `json:"warm_p50_us"`
	WarmP99 float64    `json:"warm_p99_us"`
	// Latency is the cold requests' distribution (the shape make bench reads).
	Latency Latency `json:"latency"`
	// Warm is the same functions hit once more, right after, at the same rate.
	Warm Latency `json:"warm"`
	// Errors counts failed or non-200 cold and warm requests.
	Errors int64 `json:"errors"`
	// Server is the server-side view of the cold requests from /metrics, summed over the run's
	// functions; ServerWarm the same for the warm ones.
	Server     ServerPhases `json:"server"`
	ServerWarm ServerPhases `json:"server_warm"`
	// DeploySeconds is how long deploying all functions took.
	DeploySeconds float64 `json:"deploy_seconds"`
	// SendLagP99 is how late the generator sent the cold requests against their schedule
	// (µs, p99): the generator's own error, included in every latency above.
	SendLagP99 float64 `json:"send_lag_p99_us"`
}

// ServerPhases is the server's own account of the run, from its metrics.
type ServerPhases struct {
	ColdStarts      int64   `json:"cold_starts"`
	HotStarts       int64   `json:"hot_starts"`
	DiskStarts      int64   `json:"disk_starts"`
	InstantiateMean float64 `json:"instantiate_mean_us"`
	InstantiateP99  float64 `json:"instantiate_p99_us"` // upper bound of the histogram bucket
	RunMean         float64 `json:"run_mean_us"`
	RequestMean     float64 `json:"request_mean_us"`
	RequestP99      float64 `json:"request_p99_us"` // upper bound of the histogram bucket
}

func (c *ColdConfig) validate() error {
	if c.Functions == 0 {
		c.Functions = 300
	}
	if c.Rate == 0 {
		c.Rate = 100
	}
	if c.Connections == 0 {
		c.Connections = 8
	}
	switch {
	case c.Functions < 0 || c.Functions > 100000:
		return fmt.Errorf("functions %d: want 1 to 100000", c.Functions)
	case c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate):
		return fmt.Errorf("rate %v: want a positive number of requests per second", c.Rate)
	case c.Connections < 1 || c.Connections > MaxConnections:
		return fmt.Errorf("connections %d: want 1 to %d", c.Connections, MaxConnections)
	case c.Token == "":
		return errors.New("no admin token: set WISP_TOKEN")
	}
	u, err := url.Parse(c.Addr)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("addr %q: want http://host:port", c.Addr)
	}
	c.Addr = strings.TrimRight(c.Addr, "/")
	return nil
}

// RunCold deploys cfg.Functions functions, sends exactly one request to each at a fixed
// open-loop rate (their cold starts), then the same again (warm), and reads the server's phase
// metrics. Functions are removed at the end unless cfg.Keep.
func RunCold(ctx context.Context, cfg ColdConfig) (*ColdResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	wasm := cfg.Wasm
	if wasm == nil {
		var err error
		if wasm, err = guest.Hello(); err != nil {
			return nil, err
		}
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	admin := &adminClient{addr: cfg.Addr, token: cfg.Token}
	var id [3]byte
	_, _ = rand.Read(id[:])
	prefix := "cold-" + hex.EncodeToString(id[:]) + "-"
	names := make([]string, cfg.Functions)
	for i := range names {
		names[i] = prefix + strconv.Itoa(i)
	}
	if !cfg.Keep {
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, n := range names {
				_ = admin.remove(cctx, n)
			}
		}()
	}

	progress("deploying %d functions (distinct: %v)", cfg.Functions, cfg.Distinct)
	start := time.Now()
	if err := deployAll(ctx, admin, names, wasm, cfg); err != nil {
		return nil, err
	}
	res := &ColdResult{Config: cfg, DeploySeconds: time.Since(start).Seconds()}
	progress("deployed in %.1fs; letting the server settle", res.DeploySeconds)
	time.Sleep(500 * time.Millisecond)
	before, err := admin.metrics(ctx)
	if err != nil {
		return nil, err
	}

	progress("cold: one request to each function at %.0f/s", cfg.Rate)
	cold, coldLag, coldErrs, err := oneEach(ctx, cfg, names)
	if err != nil {
		return nil, err
	}
	mid, err := admin.metrics(ctx)
	if err != nil {
		return nil, err
	}
	progress("warm: the same functions again")
	warm, _, warmErrs, err := oneEach(ctx, cfg, names)
	if err != nil {
		return nil, err
	}
	after, err := admin.metrics(ctx)
	if err != nil {
		return nil, err
	}
	res.Latency, res.Warm = cold, warm
	res.Count = cold.Count
	res.ColdP50, res.ColdP99 = cold.P50, cold.P99
	res.WarmP50, res.WarmP99 = warm.P50, warm.P99
	res.Errors = coldErrs + warmErrs
	res.Server = serverPhases(before, mid, prefix)
	res.ServerWarm = serverPhases(mid, after, prefix)
	res.SendLagP99 = coldLag.P99
	return res, nil
}

func deployAll(ctx context.Context, admin *adminClient, names []string, wasm []byte, cfg ColdConfig) error {
	// Two deploys at a time: a deploy compiles on the server, which has few cores to give.
	sem := make(chan struct{}, 2)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		body := wasm
		if cfg.Distinct {
			body = guest.Distinct(wasm, i)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- admin.deploy(ctx, n, body, cfg.WarmUp)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// oneEach sends one GET /NAME/ per name, request i at start + i/rate on connection
// i mod Connections, and records each latency from its intended send time.
func oneEach(ctx context.Context, cfg ColdConfig, names []string) (latency Latency, sendLag Latency, errs int64, err error) {
	u, _ := url.Parse(cfg.Addr)
	t := &target{Config: Config{Timeout: 30 * time.Second, Method: "GET"}, addr: u.Host, host: u.Host}
	rec, lag := NewRecorder(), NewRecorder()
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now().Add(20 * time.Millisecond)
	var errCount int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < cfg.Connections && w < len(names); w++ {
		c := newConnCaller(t, nil)
		c.busy = cfg.BusyPoll
		// Connect before the clock starts: connection setup is not part of a cold start.
		if err := c.dial(); err != nil {
			return Latency{}, Latency{}, 0, fmt.Errorf("cannot connect to %s: %w", t.addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.drop()
			for i := w; i < len(names); i += cfg.Connections {
				intended := start.Add(time.Duration(i) * interval)
				if !waitUntil(ctx, intended) {
					return
				}
				lag.Record(time.Since(intended))
				c.req = []byte("GET /" + names[i] + "/ HTTP/1.1\r\nHost: " + t.host + "\r\nUser-Agent: wisp-loadtest\r\n\r\n")
				status, err := c.do(time.Now())
				rec.Record(time.Since(intended))
				if err != nil || status != http.StatusOK {
					mu.Lock()
					errCount++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return rec.Latency(), lag.Latency(), errCount, ctx.Err()
}

// waitUntil returns at t, or false if ctx ends first. Go's timers wake up to a millisecond late
// on an idle process, which open-loop latency would count against the server; so it sleeps until
// a millisecond before t and yields in a loop for the rest.
func waitUntil(ctx context.Context, t time.Time) bool {
	if d := time.Until(t) - time.Millisecond; d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return false
		}
	}
	for time.Now().Before(t) {
		runtime.Gosched()
	}
	return ctx.Err() == nil
}

// adminClient is the slice of Wisp's admin API the scenario needs.
type adminClient struct {
	addr, token string
	http        http.Client
}

func (a *adminClient) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

func (a *adminClient) deploy(ctx context.Context, name string, wasm []byte, warmUp bool) error {
	p := "/_wisp/functions/" + name
	if warmUp {
		p += "?warmup=true"
	}
	_, err := a.do(ctx, http.MethodPut, p, wasm)
	return err
}

func (a *adminClient) remove(ctx context.Context, name string) error {
	_, err := a.do(ctx, http.MethodDelete, "/_wisp/functions/"+name, nil)
	return err
}

func (a *adminClient) metrics(ctx context.Context) (map[string]float64, error) {
	b, err := a.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "wisp_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// serverPhases sums, over the functions whose names start with prefix, what the metrics moved
// between before and after.
func serverPhases(before, after map[string]float64, prefix string) ServerPhases {
	sum := func(metric, extra string) float64 {
		var total float64
		for k, v := range after {
			if strings.HasPrefix(k, metric+"{function=\""+prefix) && strings.Contains(k, extra) {
				total += v - before[k]
			}
		}
		return total
	}
	var p ServerPhases
	p.ColdStarts = int64(sum("wisp_pool_starts_total", `tier="cold"`))
	p.HotStarts = int64(sum("wisp_pool_starts_total", `tier="hot"`))
	p.DiskStarts = int64(sum("wisp_pool_starts_total", `tier="disk"`))
	mean := func(metric, extra string) float64 {
		n := sum(metric+"_count", extra)
		if n == 0 {
			return 0
		}
		return sum(metric+"_sum", extra) / n * 1e6
	}
	p.InstantiateMean = mean("wisp_pool_phase_seconds", `phase="instantiate"`)
	p.RunMean = mean("wisp_pool_phase_seconds", `phase="run"`)
	p.RequestMean = mean("wisp_request_duration_seconds", "")
	p.InstantiateP99 = bucketQuantile(before, after, "wisp_pool_phase_seconds_bucket", prefix, `phase="instantiate"`, 0.99)
	p.RequestP99 = bucketQuantile(before, after, "wisp_request_duration_seconds_bucket", prefix, "", 0.99)
	return p
}

// bucketQuantile returns the upper bound (µs) of the histogram bucket holding quantile q of the
// observations made between before and after, summed over matching series.
func bucketQuantile(before, after map[string]float64, metric, prefix, extra string, q float64) float64 {
	counts := map[float64]float64{}
	for k, v := range after {
		if !strings.HasPrefix(k, metric+"{function=\""+prefix) || !strings.Contains(k, extra) {
			continue
		}
		i := strings.Index(k, `le="`)
		if i < 0 {
			continue
		}
		le := k[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			bound = math.Inf(1)
		}
		counts[bound] += v - before[k]
	}
	bounds := make([]float64, 0, len(counts))
	for b := range counts {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || counts[bounds[len(bounds)-1]] == 0 {
		return 0
	}
	total := counts[bounds[len(bounds)-1]] // buckets are cumulative; +Inf holds all
	for _, b := range bounds {
		if counts[b] >= q*total {
			return b * 1e6
		}
	}
	return math.Inf(1)
}
