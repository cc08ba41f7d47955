package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/common/hlog"
)

func TestMain(m *testing.M) {
	hlog.SetLevel(hlog.LevelError)
	os.Exit(m.Run())
}

var clients = []string{ClientEpoll, ClientNetConn, ClientHertz}

// startHertz serves handler on a real Hertz server (netpoll) on 127.0.0.1
// and returns its base URL; the server stops with the test.
func startHertz(tb testing.TB, handler app.HandlerFunc) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h := server.New(server.WithListener(ln), server.WithDisablePrintRoute(true), server.WithExitWaitTime(100*time.Millisecond))
	h.NoRoute(handler)
	go func() { _ = h.Run() }()
	url := "http://" + ln.Addr().String()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server on %s never came up: %v", url, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	return url
}

func hello(_ context.Context, c *app.RequestContext) {
	c.SetStatusCode(200)
	c.Response.SetBodyString("hello")
}

func TestClosedLoopCounts(t *testing.T) {
	var served atomic.Int64
	var badHost atomic.Int64
	url := startHertz(t, func(ctx context.Context, c *app.RequestContext) {
		served.Add(1)
		if string(c.Host()) != "fn.example" || string(c.Request.Header.Peek("X-Test")) != "1" {
			badHost.Add(1)
		}
		hello(ctx, c)
	})
	for _, client := range clients {
		t.Run(client, func(t *testing.T) {
			served.Store(0)
			res, err := Run(context.Background(), Config{
				URL: url + "/path?q=1", Host: "fn.example", Headers: map[string]string{"X-Test": "1"},
				Connections: 4, Duration: 10 * time.Second, Requests: 500, Client: client,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 500 || res.Status["2xx"] != 500 || res.Errors.Total() != 0 {
				t.Fatalf("got %d requests, status %v, errors %+v; want 500 2xx and no errors", res.Requests, res.Status, res.Errors)
			}
			if n := served.Load(); n < 500 || n > 500+4 {
				t.Fatalf("server saw %d requests; want 500 (+ at most one in flight per connection)", n)
			}
			if badHost.Load() != 0 {
				t.Fatalf("%d requests without the Host header or the extra header", badHost.Load())
			}
			if res.Mode != "closed" || res.Client != client || res.Lag != nil || res.Latency.Count != 500 {
				t.Fatalf("got mode %q client %q lag %v count %d", res.Mode, res.Client, res.Lag, res.Latency.Count)
			}
			if res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
				t.Fatalf("percentiles out of order: %+v", res.Latency)
			}
			if res.RPS <= 0 || res.Seconds <= 0 {
				t.Fatalf("got %v rps over %vs", res.RPS, res.Seconds)
			}
		})
	}
}

func TestOpenLoopSchedule(t *testing.T) {
	url := startHertz(t, hello)
	for _, client := range clients {
		t.Run(client, func(t *testing.T) {
			res, err := Run(context.Background(), Config{
				URL: url, Rate: 2000, Connections: 8, Duration: time.Second, Warmup: 200 * time.Millisecond, Client: client,
			})
			if err != nil {
				t.Fatal(err)
			}
			// Every arrival inside the measured second is either answered,
			// failed or counted as unsent: none is lost.
			if got := res.Requests + res.Errors.Total() - res.Errors.Status + res.Unsent; got < 1999 || got > 2001 {
				t.Fatalf("got %d requests + %+v + %d unsent = %d arrivals; want 2000", res.Requests, res.Errors, res.Unsent, got)
			}
			if res.Mode != "open" || res.Rate != 2000 || res.Lag == nil {
				t.Fatalf("got mode %q rate %v lag %v", res.Mode, res.Rate, res.Lag)
			}
			if res.Latency.P50 < res.Service.P50 {
				t.Fatalf("latency p50 %vµs below service p50 %vµs: latency must count from the intended send time", res.Latency.P50, res.Service.P50)
			}
		})
	}
}

func TestBusyPoll(t *testing.T) {
	url := startHertz(t, hello)
	for _, rate := range []float64{0, 2000} {
		res, err := Run(context.Background(), Config{
			URL: url, Rate: rate, Connections: 4, Duration: 500 * time.Millisecond, Client: ClientEpoll, BusyPoll: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.BusyPoll || res.Requests == 0 || res.Errors.Total() != 0 {
			t.Fatalf("rate %v: got busy poll %v, %d requests, errors %+v", rate, res.BusyPoll, res.Requests, res.Errors)
		}
		if rate > 0 {
			if got := res.Requests + res.Unsent; got < 999 || got > 1001 {
				t.Fatalf("got %d requests + %d unsent; want 1000 arrivals", res.Requests, res.Unsent)
			}
		}
	}
}

// TestOpenLoopShowsStall stalls the whole server once for 200 ms, as a GC
// pause or a lock would. The 200 requests scheduled during the stall wait
// for it: measured from their intended send time, about 100 take more than
// 100 ms. Measured from when they were actually sent, as a closed-loop tool
// would, only those already in flight (one per connection at most) do: the
// stall is hidden.
func TestOpenLoopShowsStall(t *testing.T) {
	const stall = 200 * time.Millisecond
	for _, client := range clients {
		t.Run(client, func(t *testing.T) {
			var gate sync.RWMutex
			var stalled atomic.Bool
			start := time.Now()
			url := startHertz(t, func(ctx context.Context, c *app.RequestContext) {
				if time.Since(start) > 700*time.Millisecond && !stalled.Swap(true) {
					gate.Lock()
					time.Sleep(stall)
					gate.Unlock()
				} else {
					gate.RLock()
					gate.RUnlock() //nolint:staticcheck // waits out a stall in progress
				}
				hello(ctx, c)
			})
			res, err := Run(context.Background(), Config{
				URL: url, Rate: 1000, Connections: 16, Duration: 1500 * time.Millisecond, Warmup: 200 * time.Millisecond, Client: client,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !stalled.Load() {
				t.Fatal("the server never stalled")
			}
			l := res.Latency
			if l.Max < 0.9*us(int64(stall)) || l.P999 < 0.5*us(int64(stall)) || l.P99 < 100e3 {
				t.Fatalf("latency p99 %vµs p99.9 %vµs max %vµs: want the %v stall in the tail", l.P99, l.P999, l.Max, stall)
			}
			slow, slowService := countAbove(l, 100e3), countAbove(res.Service, 100e3)
			if slow < 50 || slowService > 16 {
				t.Fatalf("%d requests over 100 ms from the intended send time, %d from the actual one; want about 100 and at most 16",
					slow, slowService)
			}
		})
	}
}

// countAbove counts the latencies of l's histogram buckets that start at
// or above us.
func countAbove(l Latency, us float64) int64 {
	var n int64
	for _, b := range l.Histogram {
		if b.FromUS >= us*0.999 {
			n += b.Count
		}
	}
	return n
}

func TestErrorsCounted(t *testing.T) {
	status500 := startHertz(t, func(_ context.Context, c *app.RequestContext) {
		c.SetStatusCode(500)
		c.Response.SetBodyString("boom")
	})
	closing := startHertz(t, func(_ context.Context, c *app.RequestContext) {
		_ = c.GetConn().Close() // drop the connection without answering
	})
	down := "http://" + closedAddr(t)
	for _, client := range clients {
		t.Run(client, func(t *testing.T) {
			cfg := Config{Connections: 2, Duration: 5 * time.Second, Requests: 50, Timeout: time.Second, Client: client}

			cfg.URL = status500
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors.Status != 50 || res.Status["5xx"] != 50 || res.Requests != 50 {
				t.Fatalf("500s: got %d requests, status %v, errors %+v; want 50 status errors", res.Requests, res.Status, res.Errors)
			}

			cfg.URL = closing
			res, err = Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors.IO == 0 || res.Requests != 0 {
				t.Fatalf("closed connections: got %d requests, errors %+v; want only I/O errors", res.Requests, res.Errors)
			}

			cfg.URL, cfg.Requests, cfg.Duration = down, 0, 300*time.Millisecond
			res, err = Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors.Connect == 0 || res.Requests != 0 {
				t.Fatalf("no server: got %d requests, errors %+v; want connect errors", res.Requests, res.Errors)
			}
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestTimeout(t *testing.T) {
	url := startHertz(t, func(ctx context.Context, c *app.RequestContext) {
		time.Sleep(300 * time.Millisecond)
		hello(ctx, c)
	})
	for _, client := range clients {
		t.Run(client, func(t *testing.T) {
			res, err := Run(context.Background(), Config{
				URL: url, Connections: 2, Duration: 200 * time.Millisecond, Timeout: 50 * time.Millisecond, Client: client,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors.Timeout == 0 || res.Requests != 0 {
				t.Fatalf("got %d requests, errors %+v; want timeouts only", res.Requests, res.Errors)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	url := startHertz(t, hello)
	for _, client := range clients {
		t.Run(client, func(t *testing.T) {
			for _, rate := range []float64{0, 500} {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				began := time.Now()
				res, err := Run(ctx, Config{URL: url, Rate: rate, Connections: 4, Duration: time.Minute, Client: client})
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("rate %v: got error %v; want %v", rate, err, context.DeadlineExceeded)
				}
				if took := time.Since(began); took > 5*time.Second {
					t.Fatalf("rate %v: Run took %v after its context ended", rate, took)
				}
				if res == nil || res.Requests == 0 || res.Errors.Total() != 0 {
					t.Fatalf("rate %v: got %+v; want the requests measured before the cancel, no errors", rate, res)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{}, "no target URL"},
		{"bad url", Config{URL: "http://[::1"}, "cannot parse target URL"},
		{"https", Config{URL: "https://127.0.0.1/"}, `scheme "https" is not supported`},
		{"no host", Config{URL: "http:///path"}, "has no host"},
		{"negative rate", Config{URL: "http://127.0.0.1:1/", Rate: -1}, "cannot use rate -1"},
		{"rate too high", Config{URL: "http://127.0.0.1:1/", Rate: 1e9}, "cannot use rate"},
		{"connections", Config{URL: "http://127.0.0.1:1/", Connections: -3}, "cannot use -3 connections"},
		{"too many connections", Config{URL: "http://127.0.0.1:1/", Connections: MaxConnections + 1}, "want 1 to"},
		{"duration", Config{URL: "http://127.0.0.1:1/", Duration: -time.Second}, "cannot run for -1s"},
		{"warmup", Config{URL: "http://127.0.0.1:1/", Warmup: -time.Second}, "cannot warm up"},
		{"timeout", Config{URL: "http://127.0.0.1:1/", Timeout: time.Hour}, "cannot use request timeout 1h0m0s"},
		{"requests", Config{URL: "http://127.0.0.1:1/", Requests: -1}, "cannot stop after -1 requests"},
		{"client", Config{URL: "http://127.0.0.1:1/", Client: "curl"}, `cannot use client "curl"`},
		{"header", Config{URL: "http://127.0.0.1:1/", Headers: map[string]string{"X-A": "1\r\nX-B: 2"}}, `cannot use header "X-A"`},
		{"method", Config{URL: "http://127.0.0.1:1/", Method: "GET /x"}, "contains spaces"},
		{"busy poll", Config{URL: "http://127.0.0.1:1/", Client: ClientHertz, BusyPoll: true}, `cannot busy-poll with client "hertz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v; want one containing %q", err, tt.want)
			}
			if res != nil {
				t.Fatalf("got a result %+v with a config error", res)
			}
		})
	}
}

func TestResultJSON(t *testing.T) {
	url := startHertz(t, hello)
	res, err := Run(context.Background(), Config{URL: url, Rate: 500, Connections: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Requests != res.Requests || back.Latency.P99 != res.Latency.P99 || back.Lag == nil ||
		len(back.Latency.Curve) != len(CurvePercentiles) || len(back.Latency.Histogram) == 0 {
		t.Fatalf("round trip lost data: %s", b)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["errors"].(map[string]any)["total"]; !ok {
		t.Fatalf("errors without a total: %s", b)
	}
	var sb strings.Builder
	if err := res.WriteText(&sb); err != nil || !strings.Contains(sb.String(), "open loop at 500 req/s") {
		t.Fatalf("text output %q, error %v", sb.String(), err)
	}
}

func TestRecorder(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				r.Record(time.Duration(g*1000+i+1) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	l := r.Latency()
	if l.Count != 4000 || l.Min < 0.999 || l.Min > 1.001 || l.Max < 3996 || l.Max > 4004 {
		t.Fatalf("got count %d min %v max %v; want 4000, 1µs, 4000µs", l.Count, l.Min, l.Max)
	}
	if l.P50 < 1990 || l.P50 > 2010 {
		t.Fatalf("got p50 %vµs; want 2000µs", l.P50)
	}
	var total int64
	for i, b := range l.Histogram {
		total += b.Count
		if b.ToUS <= b.FromUS || (i > 0 && b.FromUS < l.Histogram[i-1].ToUS*0.999) {
			t.Fatalf("bucket %d [%v, %v) out of order", i, b.FromUS, b.ToUS)
		}
	}
	if total != 4000 {
		t.Fatalf("histogram counts %d; want 4000", total)
	}
	if got := (&Recorder{h: newHist()}).Latency(); got.Count != 0 || got.Curve != nil {
		t.Fatalf("empty recorder: got %+v", got)
	}
}

func BenchmarkClient(b *testing.B) {
	url := startHertz(b, hello)
	for _, client := range clients {
		b.Run(client, func(b *testing.B) {
			b.ReportAllocs()
			res, err := Run(context.Background(), Config{
				URL: url, Connections: 1, Duration: time.Hour, Requests: int64(b.N), Client: client,
			})
			if err != nil {
				b.Fatal(err)
			}
			if res.Requests != int64(b.N) || res.Errors.Total() != 0 {
				b.Fatalf("got %d requests, errors %+v; want %d, none", res.Requests, res.Errors, b.N)
			}
			b.ReportMetric(res.CPU.PerRequestUS, "cpu-µs/req")
		})
	}
}
