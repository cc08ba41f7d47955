package loadtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Client names accepted by Config.Client. All three keep connections alive
// and never pipeline: one request in flight per connection.
const (
	// ClientEpoll is hand-rolled HTTP/1.1 on non-blocking sockets, driven by
	// one epoll event loop per CPU (Linux only): a request costs a write and
	// a read system call and no goroutine switch. The fastest; the default.
	ClientEpoll = "epoll"
	// ClientNetConn is hand-rolled HTTP/1.1 on net.Conn, one goroutine per
	// connection; portable, the default where epoll is not available.
	ClientNetConn = "netconn"
	// ClientHertz is Hertz's client over netpoll.
	ClientHertz = "hertz"
)

// Defaults applied by Run where a Config field is zero.
const (
	DefaultConnections = 32
	DefaultDuration    = 10 * time.Second
	DefaultTimeout     = 5 * time.Second
	DefaultClient      = ClientEpoll // ClientNetConn where epoll is not available
)

// Limits on Config values; Run refuses values beyond them, so every run is
// bounded in time and size.
const (
	MaxConnections = 10000
	MaxDuration    = 24 * time.Hour
	MaxTimeout     = time.Minute
	MaxRate        = 10_000_000
)

// Config says what to load and how. It is plain data: the zero value of each
// field means the documented default, and Run does not keep it.
type Config struct {
	// URL is the target, "http://host:port/path?query". Only plain http is
	// supported. Required.
	URL string `json:"url"`
	// Host, when set, is sent as the Host header instead of URL's host
	// (routing by host name on a gateway listening on an IP address).
	Host string `json:"host,omitempty"`
	// Method defaults to GET.
	Method string `json:"method,omitempty"`
	// Body is sent with every request, with its Content-Length.
	Body []byte `json:"body,omitempty"`
	// Headers are added to every request.
	Headers map[string]string `json:"headers,omitempty"`

	// Rate is the open-loop arrival rate in requests per second, spread
	// evenly over the connections. Zero means closed loop: every connection
	// sends its next request as soon as the previous response is read.
	Rate float64 `json:"rate,omitempty"`
	// Connections is the number of concurrent connections, each driven by
	// its own worker (default DefaultConnections).
	Connections int `json:"connections,omitempty"`
	// Duration is how long requests are measured (default DefaultDuration).
	Duration time.Duration `json:"duration,omitempty"`
	// Warmup runs the same load before Duration starts; what it measures
	// is discarded.
	Warmup time.Duration `json:"warmup,omitempty"`
	// Timeout bounds each request, connect included (default DefaultTimeout).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Requests, when positive, ends the run once that many measured
	// requests have completed, even before Duration.
	Requests int64 `json:"requests,omitempty"`
	// Client is ClientEpoll, ClientNetConn or ClientHertz (default
	// DefaultClient).
	Client string `json:"client,omitempty"`
	// BusyPoll makes ClientEpoll's event loops spin instead of sleeping
	// between events. Waking an idle CPU takes tens of microseconds (more in
	// a VM), which open-loop latency would count; spinning takes that error
	// down to a few microseconds and the generator's CPU cost per request
	// down with it, at the price of one whole CPU per event loop. Use it
	// only with the generator pinned to CPUs of its own (taskset), never
	// sharing them with the target.
	BusyPoll bool `json:"busy_poll,omitempty"`
}

// target is a validated Config with defaults applied.
type target struct {
	Config
	addr   string // host:port to dial
	host   string // Host header
	reqURI string // path and query
	open   bool
}

func (c Config) validate() (*target, error) {
	t := &target{Config: c}
	if t.Method == "" {
		t.Method = "GET"
	}
	if t.Connections == 0 {
		t.Connections = DefaultConnections
	}
	if t.Duration == 0 {
		t.Duration = DefaultDuration
	}
	if t.Timeout == 0 {
		t.Timeout = DefaultTimeout
	}
	if t.Client == "" {
		t.Client = DefaultClient
		if !epollAvailable {
			t.Client = ClientNetConn
		}
	}
	if t.URL == "" {
		return nil, fmt.Errorf("cannot load: no target URL (want http://host:port/path)")
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse target URL %q: %w", t.URL, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("cannot load %q: scheme %q is not supported (want http)", t.URL, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("cannot load %q: URL has no host", t.URL)
	}
	t.addr = u.Host
	if u.Port() == "" {
		t.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	t.host = u.Host
	if t.Host != "" {
		t.host = t.Host
	}
	t.reqURI = u.RequestURI()
	for k, v := range t.Headers {
		if k == "" || strings.ContainsAny(k, ":\r\n \t") || strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("cannot use header %q: invalid name or value", k)
		}
	}
	if strings.ContainsAny(t.Method, " \r\n\t") || strings.ContainsAny(t.host, " \r\n\t") {
		return nil, fmt.Errorf("cannot use method %q or host %q: contains spaces or line breaks", t.Method, t.host)
	}
	switch {
	case t.Rate < 0 || t.Rate > MaxRate || t.Rate != t.Rate:
		return nil, fmt.Errorf("cannot use rate %v requests/s: want 0 (closed loop) up to %d", c.Rate, MaxRate)
	case t.Connections < 1 || t.Connections > MaxConnections:
		return nil, fmt.Errorf("cannot use %d connections: want 1 to %d", c.Connections, MaxConnections)
	case t.Duration < 0 || t.Duration > MaxDuration:
		return nil, fmt.Errorf("cannot run for %v: want a duration up to %v", c.Duration, MaxDuration)
	case t.Warmup < 0 || t.Warmup > MaxDuration:
		return nil, fmt.Errorf("cannot warm up for %v: want a duration up to %v", c.Warmup, MaxDuration)
	case t.Timeout < 0 || t.Timeout > MaxTimeout:
		return nil, fmt.Errorf("cannot use request timeout %v: want up to %v", c.Timeout, MaxTimeout)
	case t.Requests < 0:
		return nil, fmt.Errorf("cannot stop after %d requests: want 0 (no limit) or more", c.Requests)
	case t.Client != ClientEpoll && t.Client != ClientNetConn && t.Client != ClientHertz:
		return nil, fmt.Errorf("cannot use client %q: want %q, %q or %q", c.Client, ClientEpoll, ClientNetConn, ClientHertz)
	case t.BusyPoll && t.Client != ClientEpoll:
		return nil, fmt.Errorf("cannot busy-poll with client %q: only %q can", t.Client, ClientEpoll)
	}
	t.open = t.Rate > 0
	return t, nil
}
