package faas

import (
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/internal/abi"
)

// call serves one request through serve, as wisp_handle does, with h as the handler.
func call(t *testing.T, h func(*http.Request) *http.Response, req *abi.Request) abi.Response {
	t.Helper()
	handler = h
	t.Cleanup(func() { handler = nil })
	return decode(t, serve(abi.AppendRequest(nil, req)))
}

func decode(t *testing.T, out []byte) abi.Response {
	t.Helper()
	var resp abi.Response
	if err := abi.DecodeResponse(out, &resp); err != nil {
		t.Fatalf("serve returned an undecodable response: %v", err)
	}
	return resp
}

// hs returns headers from name, value pairs.
func hs(kv ...string) []abi.Header {
	out := []abi.Header{}
	for i := 0; i < len(kv); i += 2 {
		out = append(out, abi.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func get(uri string) *abi.Request {
	return &abi.Request{Method: "GET", URI: uri, FullURI: "/fn" + uri, Host: "h", RemoteAddr: "1.2.3.4:5"}
}

func TestNotStarted(t *testing.T) {
	handler = nil
	resp := decode(t, serve(abi.AppendRequest(nil, get("/"))))
	if resp.Status != 0 || string(resp.Body) != "faas.Start was not called" {
		t.Errorf("got %d %q; want 0 %q", resp.Status, resp.Body, "faas.Start was not called")
	}
}

func TestRequestFields(t *testing.T) {
	in := &abi.Request{
		Method: "POST", URI: "/a/b%20c?x=1&y=2", FullURI: "/fn/a/b%20c?x=1&y=2",
		Host: "example.com", RemoteAddr: "10.0.0.1:999",
		Headers: hs("content-type", "text/plain", "X-Multi", "1", "Host", "example.com",
			"Accept", "a", "x-multi", "2"),
		Body: []byte("hello body"),
	}
	var got http.Request
	var body string
	resp := call(t, func(r *http.Request) *http.Response {
		got = *r
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("ReadAll: %v", err)
		}
		body = string(b)
		return &http.Response{}
	}, in)
	if resp.Status != 200 {
		t.Fatalf("status %d (%s); want 200", resp.Status, resp.Body)
	}
	if got.Method != "POST" || got.URL.Path != "/a/b c" || got.URL.RawQuery != "x=1&y=2" ||
		got.URL.Query().Get("y") != "2" || got.RequestURI != "/fn/a/b%20c?x=1&y=2" ||
		got.Host != "example.com" || got.RemoteAddr != "10.0.0.1:999" || got.ContentLength != 10 {
		t.Errorf("request fields wrong: %+v, URL %+v", got, got.URL)
	}
	wantHeader := http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"1", "2"}, "Accept": {"a"}}
	if !reflect.DeepEqual(got.Header, wantHeader) {
		t.Errorf("Header = %v; want %v", got.Header, wantHeader)
	}
	// Adding to one key must not overwrite the value of the key decoded after it.
	got.Header.Add("Content-Type", "x")
	if got.Header.Get("X-Multi") != "1" {
		t.Errorf("Add to Content-Type changed X-Multi: %v", got.Header)
	}
	if body != "hello body" {
		t.Errorf("body %q; want %q", body, "hello body")
	}
	// The body is unreadable once the handler has returned.
	if _, err := got.Body.Read(make([]byte, 1)); err == nil {
		t.Error("Read after the handler returned succeeded")
	}
}

func TestResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp *http.Response
		want abi.Response
	}{
		{"zero", &http.Response{}, abi.Response{Status: 200, Headers: []abi.Header{}}},
		{"new body", &http.Response{StatusCode: 201, Header: http.Header{"A": {"1", "2"}},
			Body: http.MustNewBody([]byte("made"))},
			abi.Response{Status: 201, Headers: hs("A", "1", "A", "2"), Body: []byte("made")}},
		{"reader body", &http.Response{StatusCode: 404,
			Body: io.NopCloser(iotest.OneByteReader(strings.NewReader(strings.Repeat("x", 10000))))},
			abi.Response{Status: 404, Headers: []abi.Header{}, Body: []byte(strings.Repeat("x", 10000))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := call(t, func(*http.Request) *http.Response { return tc.resp }, get("/"))
			if got.Status != tc.want.Status || !slices.Equal(got.Headers, tc.want.Headers) ||
				string(got.Body) != string(tc.want.Body) {
				t.Errorf("got %d %v %.80q; want %d %v %.80q", got.Status, got.Headers, got.Body,
					tc.want.Status, tc.want.Headers, tc.want.Body)
			}
		})
	}
}

func TestEchoRequestBody(t *testing.T) {
	in := get("/")
	in.Body = []byte("echoed")
	got := call(t, func(r *http.Request) *http.Response { return &http.Response{Body: r.Body} }, in)
	if string(got.Body) != "echoed" {
		t.Errorf("body %q; want echoed", got.Body)
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestResponseBodyIsClosed(t *testing.T) {
	b := &closeRecorder{Reader: strings.NewReader("x")}
	call(t, func(*http.Request) *http.Response { return &http.Response{Body: b} }, get("/"))
	if !b.closed {
		t.Error("response body was not closed")
	}
}

func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(*http.Request) *http.Response
		status  int
		want    []string
	}{
		{"panic", func(*http.Request) *http.Response { panic("boom") }, 0,
			[]string{"panic: boom", "goroutine", "faas_test.go"}},
		{"runtime error", func(r *http.Request) *http.Response { _ = r.Header["x"][3]; return nil }, 0,
			[]string{"panic: runtime error: index out of range"}},
		{"nil response", func(*http.Request) *http.Response { return nil }, 0,
			[]string{"handler returned a nil *http.Response"}},
		{"bad status", func(*http.Request) *http.Response { return &http.Response{StatusCode: 42} }, 0,
			[]string{"invalid status code 42"}},
		{"body read error", func(*http.Request) *http.Response {
			return &http.Response{Body: io.NopCloser(iotest.ErrReader(errors.New("disk on fire")))}
		}, 0, []string{"cannot read response body: disk on fire"}},
		{"body read panics", func(*http.Request) *http.Response {
			return &http.Response{Body: io.NopCloser(panicReader{})}
		}, 0, []string{"panic: reader"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := call(t, tc.handler, get("/"))
			if got.Status != tc.status || len(got.Headers) != 0 {
				t.Errorf("status %d headers %v; want %d and none", got.Status, got.Headers, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(got.Body), w) {
					t.Errorf("body %q does not contain %q", got.Body, w)
				}
			}
		})
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("reader") }

func TestMalformedInput(t *testing.T) {
	handler = func(*http.Request) *http.Response { t.Error("handler called"); return nil }
	defer func() { handler = nil }()
	resp := decode(t, serve([]byte{1, 0, 0, 0, 9}))
	if resp.Status != 0 || !strings.Contains(string(resp.Body), "cannot decode request") {
		t.Errorf("got %d %q; want a failure about decoding", resp.Status, resp.Body)
	}
	resp = decode(t, serve(abi.AppendRequest(nil, get("/%zz"))))
	if resp.Status != 400 || !strings.Contains(string(resp.Body), "malformed request URI") {
		t.Errorf("got %d %q; want 400 malformed request URI", resp.Status, resp.Body)
	}
}

func TestResponseBufferIsReused(t *testing.T) {
	handler = func(*http.Request) *http.Response {
		return &http.Response{Body: http.MustNewBody([]byte("x"))}
	}
	defer func() { handler = nil }()
	enc := abi.AppendRequest(nil, get("/"))
	first := serve(enc)
	second := serve(enc)
	if &first[0] != &second[0] || !slices.Equal(first, second) {
		t.Error("second response did not reuse the first one's buffer")
	}
}

func TestServeAllocations(t *testing.T) {
	resp := &http.Response{Header: http.Header{"Content-Type": {"text/plain"}}}
	handler = func(*http.Request) *http.Response { return resp }
	defer func() { handler = nil }()
	enc := abi.AppendRequest(nil, &abi.Request{Method: "GET", URI: "/a?b=c", FullURI: "/f/a?b=c",
		Headers: hs("Accept", "*/*", "User-Agent", "t")})
	serve(enc)
	// The request's strings, the Request with its body reader, URL and header values, and the
	// header map (its header and one group).
	if n := testing.AllocsPerRun(100, func() { serve(enc) }); n > 4 {
		t.Errorf("serve made %v allocations per request; want at most 4", n)
	}
}
