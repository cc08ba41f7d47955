package fetch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/vectors"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// request is the guest's encoding of a fetch (docs/hostcalls.md).
func request(method, url string, body string, timeout time.Duration, headers ...string) []byte {
	b := wire.AppendStr(nil, method)
	b = wire.AppendStr(b, url)
	b = wire.AppendU32(b, uint32(len(headers)/2))
	for _, h := range headers {
		b = wire.AppendStr(b, h)
	}
	b = wire.AppendStr(b, body)
	return wire.AppendU32(b, uint32(timeout/time.Millisecond))
}

type response struct {
	code    ring.Code
	status  int
	header  http.Header
	body    string
	message string
	errorID string
}

func decodeResponse(t testing.TB, b []byte) response {
	t.Helper()
	d := wire.NewDecoder(b)
	r := response{code: ring.Code(d.U32("code"))}
	if r.code != ring.CodeOK {
		r.message, r.errorID = d.Str("message"), d.Str("error id")
	} else {
		r.status = int(d.U32("status"))
		r.header = http.Header{}
		for range d.Count("headers", 8) {
			k := d.Str("name")
			r.header.Add(k, d.Str("value"))
		}
		r.body = d.Str("body")
	}
	if err := d.End(); err != nil {
		t.Fatalf("cannot decode completion: %v", err)
	}
	return r
}

func newHost(t testing.TB, cfg Config) *ring.Host {
	t.Helper()
	h, err := ring.New(ring.Config{
		Providers: []ring.Provider{New(cfg)},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits:    ring.Limits{MaxHostcalls: 1 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newInstance(t testing.TB, h *ring.Host, allow ...string) *ring.Instance {
	t.Helper()
	f, err := h.NewFunction(ring.FunctionConfig{Name: "f", Fetch: ring.FetchPolicy{Allow: allow}})
	if err != nil {
		t.Fatal(err)
	}
	in := f.NewInstance()
	in.Begin(context.Background())
	t.Cleanup(in.End)
	return in
}

// fetchAll submits the payloads at once and returns their completions in order.
func fetchAll(t testing.TB, in *ring.Instance, payloads ...[]byte) []response {
	t.Helper()
	for i, p := range payloads {
		if r := in.Submit(uint32(i+1), ring.ProviderFetch, p); r < 0 {
			t.Fatalf("Submit = %v", ring.Code(-r))
		}
	}
	out := make([]response, len(payloads))
	for range payloads {
		id, size, r := in.Wait()
		if r < 0 {
			t.Fatalf("Wait = %v", ring.Code(-r))
		}
		buf := make([]byte, size)
		in.Read(id, ring.ProviderFetch, buf)
		out[id-1] = decodeResponse(t, buf)
	}
	return out
}

func fetch1(t testing.TB, in *ring.Instance, payload []byte) response {
	t.Helper()
	return fetchAll(t, in, payload)[0]
}

func TestRequestAndResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Got", r.Header.Get("X-Send"))
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		w.WriteHeader(201)
		fmt.Fprintf(w, "%s %s", r.URL.RequestURI(), body)
	}))
	defer srv.Close()
	in := newInstance(t, newHost(t, Config{AllowLoopback: true}))
	r := fetch1(t, in, request("PUT", srv.URL+"/a?b=c", "payload", 0, "X-Send", "hi"))
	if r.code != ring.CodeOK || r.status != 201 || r.body != "/a?b=c payload" || r.header.Get("X-Method") != "PUT" ||
		r.header.Get("X-Got") != "hi" || strings.Join(r.header.Values("X-Multi"), ",") != "1,2" {
		t.Fatalf("got %+v", r)
	}
	if r := fetch1(t, in, request("", srv.URL, "", 0)); r.header.Get("X-Method") != "GET" {
		t.Errorf("empty method sent as %q; want GET", r.header.Get("X-Method"))
	}
}

// TestAddressRanges checks the dial-time check: a name that resolves to loopback is refused
// like the address itself, unless the operator allows loopback.
func TestAddressRanges(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	refused := newInstance(t, newHost(t, Config{}))
	allowed := newInstance(t, newHost(t, Config{AllowLoopback: true}))
	for _, url := range []string{
		srv.URL,
		"http://localhost:" + strconv.Itoa(port),
		"http://[::ffff:127.0.0.1]:" + strconv.Itoa(port),
		"http://0.0.0.0:" + strconv.Itoa(port),
	} {
		r := fetch1(t, refused, request("GET", url, "", 0))
		if r.code != ring.CodeDenied || !strings.Contains(r.message, "is not allowed") {
			t.Errorf("%s without AllowLoopback: %v %q; want denied", url, r.code, r.message)
		}
	}
	if r := fetch1(t, allowed, request("GET", "http://localhost:"+strconv.Itoa(port), "", 0)); r.code != ring.CodeOK {
		t.Errorf("localhost with AllowLoopback: %v %s", r.code, r.message)
	}
	if r := fetch1(t, allowed, request("GET", "http://0.0.0.0:"+strconv.Itoa(port), "", 0)); r.code != ring.CodeDenied {
		t.Errorf("0.0.0.0 with AllowLoopback: %v; want denied always", r.code)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"8.8.8.8", ""},
		{"2606:4700::1111", ""},
		{"127.0.0.1", classLoopback},
		{"127.9.9.9", classLoopback},
		{"::1", classLoopback},
		{"::ffff:127.0.0.1", classLoopback},
		{"10.1.2.3", classPrivate},
		{"172.16.0.1", classPrivate},
		{"172.32.0.1", ""},
		{"192.168.1.1", classPrivate},
		{"100.64.0.1", classPrivate},
		{"fd00::1", classPrivate},
		{"169.254.169.254", classLinkLocal},
		{"fe80::1", classLinkLocal},
		{"64:ff9b::a9fe:a9fe", classLinkLocal}, // 169.254.169.254 through NAT64
		{"64:ff9b::808:808", ""},
		{"0.0.0.0", classReserved},
		{"0.1.2.3", classReserved},
		{"::", classReserved},
		{"224.0.0.1", classReserved},
		{"ff02::1", classReserved},
		{"255.255.255.255", classReserved},
	} {
		if got := classify(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("classify(%s) = %q; want %q", tc.addr, got, tc.want)
		}
	}
}

func TestAllowList(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	h := newHost(t, Config{AllowLoopback: true})
	for _, tc := range []struct {
		name  string
		allow []string
		url   string
		want  ring.Code
	}{
		{"empty list allows any host", nil, srv.URL, ring.CodeOK},
		{"exact host", []string{"127.0.0.1"}, srv.URL, ring.CodeOK},
		{"exact host and port", []string{"127.0.0.1:" + port}, srv.URL, ring.CodeOK},
		{"other port", []string{"127.0.0.1:1"}, srv.URL, ring.CodeDenied},
		{"other host", []string{"example.com"}, srv.URL, ring.CodeDenied},
		{"subdomain pattern", []string{"*.localhost"}, "http://localhost:" + port, ring.CodeDenied},
		{"host name", []string{"localhost"}, "http://LOCALHOST:" + port, ring.CodeOK},
		{"scheme", nil, "ftp://127.0.0.1/", ring.CodeDenied},
		{"file", nil, "file:///etc/passwd", ring.CodeDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fetch1(t, newInstance(t, h, tc.allow...), request("GET", tc.url, "", 0))
			if r.code != tc.want {
				t.Errorf("got %v %q; want %v", r.code, r.message, tc.want)
			}
		})
	}
	if !matchHost("*.example.com", "a.b.example.com", "443") || matchHost("*.example.com", "example.com", "443") ||
		!matchHost("[::1]:8080", "::1", "8080") {
		t.Error("matchHost patterns")
	}
}

func TestRedirects(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/hop/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
			if n == 0 {
				fmt.Fprint(w, "arrived")
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
		case r.URL.Path == "/away":
			http.Redirect(w, r, "http://localhost:"+strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)+"/hop/0", http.StatusFound)
		}
	}))
	defer srv.Close()
	h := newHost(t, Config{AllowLoopback: true, MaxRedirects: 3})
	in := newInstance(t, h, "127.0.0.1")
	if r := fetch1(t, in, request("GET", srv.URL+"/hop/3", "", 0)); r.code != ring.CodeOK || r.body != "arrived" {
		t.Errorf("3 redirects: %v %q %q", r.code, r.body, r.message)
	}
	if r := fetch1(t, in, request("GET", srv.URL+"/hop/4", "", 0)); r.code != ring.CodeInvalid || !strings.Contains(r.message, "too many redirects") {
		t.Errorf("4 redirects: %v %q; want invalid, too many redirects", r.code, r.message)
	}
	if r := fetch1(t, in, request("GET", srv.URL+"/away", "", 0)); r.code != ring.CodeDenied {
		t.Errorf("redirect off the allow-list: %v %q; want denied", r.code, r.message)
	}
	none := newInstance(t, newHost(t, Config{AllowLoopback: true, MaxRedirects: -1}))
	if r := fetch1(t, none, request("GET", srv.URL+"/hop/1", "", 0)); r.code != ring.CodeOK || r.status != http.StatusFound {
		t.Errorf("MaxRedirects -1: %v status %d; want the 302 itself", r.code, r.status)
	}
}

func TestLimits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(strings.Repeat("x", 2000)))
		case "/chunked":
			for range 20 {
				w.Write([]byte(strings.Repeat("y", 100)))
				w.(http.Flusher).Flush()
			}
		case "/exact":
			w.Write([]byte(strings.Repeat("z", 1000)))
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	in := newInstance(t, newHost(t, Config{AllowLoopback: true, MaxResponseBody: 1000, MaxRequestBody: 10, Timeout: 2 * time.Second}))
	for _, tc := range []struct {
		name    string
		payload []byte
		want    ring.Code
	}{
		{"response with a length over the limit", request("GET", srv.URL+"/big", "", 0), ring.CodeTooLarge},
		{"chunked response over the limit", request("GET", srv.URL+"/chunked", "", 0), ring.CodeTooLarge},
		{"response at the limit", request("GET", srv.URL+"/exact", "", 0), ring.CodeOK},
		{"request body over the limit", request("POST", srv.URL+"/exact", "12345678901", 0), ring.CodeTooLarge},
		{"guest's timeout", request("GET", srv.URL+"/slow", "", 50*time.Millisecond), ring.CodeTimeout},
		{"bad method", request("GE T", srv.URL, "", 0), ring.CodeInvalid},
		{"bad header", request("GET", srv.URL, "", 0, "X-A", "a\r\nInjected: 1"), ring.CodeInvalid},
		{"bad url", request("GET", "http://[::1", "", 0), ring.CodeInvalid},
		{"malformed payload", []byte{1, 2, 3}, ring.CodeInvalid},
	} {
		if r := fetch1(t, in, tc.payload); r.code != tc.want {
			t.Errorf("%s: got %v %q; want %v", tc.name, r.code, r.message, tc.want)
		}
	}
}

// TestConcurrent proves that a guest's fetches run at once: the server answers none until all
// sixteen have arrived.
func TestConcurrent(t *testing.T) {
	const n = 16
	var wg sync.WaitGroup
	wg.Add(n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Done()
		wg.Wait()
		fmt.Fprint(w, r.URL.Query().Get("i"))
	}))
	defer srv.Close()
	in := newInstance(t, newHost(t, Config{AllowLoopback: true, Timeout: 10 * time.Second}))
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = request("GET", fmt.Sprintf("%s/?i=%d", srv.URL, i), "", 0)
	}
	for i, r := range fetchAll(t, in, payloads...) {
		if r.code != ring.CodeOK || r.body != strconv.Itoa(i) {
			t.Errorf("fetch %d: %v %q %q", i, r.code, r.body, r.message)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(request("GET", "http://example.com/", "", 0))
	f.Add(request("POST", "https://x/y", "body", time.Second, "A", "b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		if !validToken(r.Method) {
			t.Fatalf("Decode accepted method %q", r.Method)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if !validHeader(k, v) {
					t.Fatalf("Decode accepted header %q: %q", k, v)
				}
			}
		}
	})
}

// BenchmarkSixteenSlowFetches submits 16 fetches to a server that takes 50 ms per response and
// waits for all: about 50 ms per op, not 800.
func BenchmarkSixteenSlowFetches(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		fmt.Fprint(w, "slow")
	}))
	defer srv.Close()
	in := newInstance(b, newHost(b, Config{AllowLoopback: true}))
	payloads := make([][]byte, 16)
	for i := range payloads {
		payloads[i] = request("GET", srv.URL, "", 0)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range fetchAll(b, in, payloads...) {
			if r.code != ring.CodeOK || r.body != "slow" {
				b.Fatalf("%v %q", r.code, r.message)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

func TestSDKVectors(t *testing.T) {
	vs := vectors.Load(t, ring.ProviderFetch)
	got, err := Decode(vs["fetch put with header and timeout"])
	if err != nil || got.Method != "PUT" || got.URL != "https://api.example/v1?q=1" || got.Header.Get("Content-Type") != "text/plain" ||
		len(got.Header) != 1 || string(got.Body) != "body" || got.Timeout != 1500*time.Millisecond {
		t.Errorf("decoded %+v, %v", got, err)
	}
}
