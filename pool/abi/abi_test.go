package abi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// vectorsFile holds encodings computed from docs/abi.md independently of both codecs; the guest
// codec (sdk/go/internal/abi) checks itself against the same file, so the two sides agree on
// every byte.
const vectorsFile = "../../sdk/go/internal/abi/testdata/vectors.json"

type vectors struct {
	Requests []struct {
		Name, Method, URI, Host, Body, Hex string
		FullURI                            string `json:"full_uri"`
		RemoteAddr                         string `json:"remote_addr"`
		Headers                            [][2]string
	}
	Responses []struct {
		Name, Body, Hex string
		Status          int
		Headers         [][2]string
	}
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Requests) == 0 || len(v.Responses) == 0 {
		t.Fatal("no vectors loaded")
	}
	return v
}

func headers(kv [][2]string) []Header {
	var hs []Header
	for _, h := range kv {
		hs = append(hs, Header{Name: []byte(h[0]), Value: []byte(h[1])})
	}
	return hs
}

func equalHeaders(a, b []Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Name, b[i].Name) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func equalRequests(a, b *Request) bool {
	return bytes.Equal(a.Method, b.Method) && bytes.Equal(a.URI, b.URI) &&
		bytes.Equal(a.FullURI, b.FullURI) && bytes.Equal(a.Host, b.Host) &&
		bytes.Equal(a.RemoteAddr, b.RemoteAddr) && equalHeaders(a.Headers, b.Headers) &&
		bytes.Equal(a.Body, b.Body)
}

func TestRequestVectors(t *testing.T) {
	for _, v := range loadVectors(t).Requests {
		t.Run(v.Name, func(t *testing.T) {
			want, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			r := &Request{Method: []byte(v.Method), URI: []byte(v.URI), FullURI: []byte(v.FullURI),
				Host: []byte(v.Host), RemoteAddr: []byte(v.RemoteAddr), Headers: headers(v.Headers),
				Body: []byte(v.Body)}
			got := AppendRequest(nil, r)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendRequest:\ngot  %x\nwant %x", got, want)
			}
			if n := RequestSize(r); n != len(want) {
				t.Errorf("RequestSize = %d; want %d", n, len(want))
			}
			var back Request
			if err := DecodeRequest(want, &back); err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if !equalRequests(&back, r) {
				t.Errorf("DecodeRequest: got %+v; want %+v", back, r)
			}
		})
	}
}

func TestResponseVectors(t *testing.T) {
	for _, v := range loadVectors(t).Responses {
		t.Run(v.Name, func(t *testing.T) {
			enc, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			var got Response
			if err := DecodeResponse(enc, &got); err != nil {
				t.Fatalf("DecodeResponse: %v", err)
			}
			if got.Status != v.Status || !equalHeaders(got.Headers, headers(v.Headers)) ||
				string(got.Body) != v.Body {
				t.Errorf("DecodeResponse: got %d %q %q; want %d %q %q",
					got.Status, got.Headers, got.Body, v.Status, v.Headers, v.Body)
			}
			if again := AppendResponse(nil, &got); !bytes.Equal(again, enc) {
				t.Errorf("AppendResponse:\ngot  %x\nwant %x", again, enc)
			}
			if n := ResponseSize(&got); n != len(enc) {
				t.Errorf("ResponseSize = %d; want %d", n, len(enc))
			}
		})
	}
}

// TestResponseLayout spells out one response byte by byte, as docs/abi.md lays it out.
func TestResponseLayout(t *testing.T) {
	enc := []byte{
		0xf8, 0x01, 0, 0, // status 504
		2, 0, 0, 0, // header_count
		1, 0, 0, 0, 'a', 1, 0, 0, 0, '1',
		1, 0, 0, 0, 'a', 0, 0, 0, 0,
		3, 0, 0, 0, 'b', 'o', 'd',
	}
	var r Response
	if err := DecodeResponse(enc, &r); err != nil {
		t.Fatal(err)
	}
	want := []Header{{Name: []byte("a"), Value: []byte("1")}, {Name: []byte("a"), Value: []byte{}}}
	if r.Status != 504 || !equalHeaders(r.Headers, want) || string(r.Body) != "bod" {
		t.Errorf("got %d %q %q; want 504 [a:1 a:] bod", r.Status, r.Headers, r.Body)
	}
}

func TestDecodeResponseAliasesAndReuses(t *testing.T) {
	enc := AppendResponse(nil, &Response{Status: 200, Headers: []Header{
		{Name: []byte("a"), Value: []byte("1")}}, Body: []byte("xyz")})
	r := Response{Headers: make([]Header, 0, 4)}
	first := &r.Headers[:1][0]
	if err := DecodeResponse(enc, &r); err != nil {
		t.Fatal(err)
	}
	if &r.Headers[0] != first {
		t.Error("Headers was reallocated although its capacity sufficed")
	}
	enc[len(enc)-1] = 'Z'
	if string(r.Body) != "xyZ" {
		t.Errorf("Body = %q; want it to alias the buffer", r.Body)
	}
	// Appending to a decoded field must not overwrite what follows it in the buffer.
	_ = append(r.Headers[0].Name, '!')
	if r.Headers[0].Value[0] != '1' || len(r.Headers[0].Name) != cap(r.Headers[0].Name) {
		t.Error("a decoded field's capacity reaches into the next field")
	}
}

func TestDecodeResponseMalformed(t *testing.T) {
	u32 := func(v uint32) []byte { return appendU32(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	valid := AppendResponse(nil, &Response{Status: 200, Headers: []Header{
		{Name: []byte("n"), Value: []byte("v")}}, Body: []byte("body")})
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"empty", "status truncated at offset 0", nil},
		{"short status", "status truncated at offset 0", []byte{200, 0}},
		{"status 99", "status 99 out of range at offset 0", cat(u32(99), u32(0), u32(0))},
		{"status 1000", "status 1000 out of range at offset 0", cat(u32(1000), u32(0), u32(0))},
		{"no header count", "header_count truncated at offset 4", u32(200)},
		{"header count past end", "header_count 2 past end of 20 bytes at offset 4",
			cat(u32(200), u32(2), u32(0), u32(0), u32(0))},
		{"huge header count", "header_count 4294967295 past end", cat(u32(200), u32(0xffffffff), u32(0))},
		{"name past end", "header name length 9 past end of 17 bytes at offset 8",
			cat(u32(200), u32(1), u32(9), []byte("abcde"))},
		{"value truncated", "header value length truncated at offset 17",
			cat(u32(200), u32(1), u32(5), []byte("abcde"), []byte{1, 0})},
		{"body missing", "body length truncated at offset 18", valid[:18]},
		{"body past end", "body length 4 past end of 25 bytes at offset 18", valid[:len(valid)-1]},
		{"huge body", "body length 4294967295 past end", cat(u32(200), u32(0), u32(0xffffffff))},
		{"trailing", "1 trailing bytes at offset 26", append(append([]byte{}, valid...), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			err := DecodeResponse(tc.in, &r)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v; want an error wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDecodeRequestMalformed(t *testing.T) {
	valid := AppendRequest(nil, &Request{Method: []byte("GET"), URI: []byte("/")})
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"version", "unsupported version 7 at offset 0", append([]byte{7, 0, 0, 0}, valid[4:]...)},
		{"truncated", "body length truncated", valid[:len(valid)-2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := DecodeRequest(tc.in, &Request{})
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}

func TestResetKeepsCapacity(t *testing.T) {
	r := Request{Method: []byte("GET")}
	r.AddHeader([]byte("a"), []byte("b"))
	r.Reset()
	if r.Method != nil || len(r.Headers) != 0 || cap(r.Headers) == 0 {
		t.Errorf("after Reset: %+v (cap %d); want empty with capacity", r, cap(r.Headers))
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(AppendResponse(nil, &Response{Status: 200, Headers: []Header{
		{Name: []byte("Content-Type"), Value: []byte("text/plain")}}, Body: []byte("hi")}))
	f.Add(AppendResponse(nil, &Response{Status: 0, Body: []byte("panic: boom")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Response
		err := DecodeResponse(b, &r)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if r.Status != 0 && (r.Status < 100 || r.Status > 999) {
			t.Fatalf("accepted status %d", r.Status)
		}
		if again := AppendResponse(nil, &r); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding a decoded response changed it:\nin  %x\nout %x", b, again)
		}
	})
}

func FuzzRequestRoundTrip(f *testing.F) {
	f.Add([]byte("GET"), []byte("/a?b"), []byte("h"), []byte("n"), []byte("v"), []byte("body"))
	f.Fuzz(func(t *testing.T, method, uri, host, name, value, body []byte) {
		r := &Request{Method: method, URI: uri, FullURI: uri, Host: host, Body: body}
		r.AddHeader(name, value)
		r.AddHeader(value, name)
		enc := AppendRequest(nil, r)
		if len(enc) != RequestSize(r) {
			t.Fatalf("encoded %d bytes; RequestSize says %d", len(enc), RequestSize(r))
		}
		var back Request
		if err := DecodeRequest(enc, &back); err != nil {
			t.Fatal(err)
		}
		if !equalRequests(&back, r) {
			t.Fatalf("round trip: got %+v; want %+v", back, r)
		}
	})
}

// benchRequest is a typical browser request as the gateway hands it over.
func benchRequest() *Request {
	r := &Request{Method: []byte("GET"), URI: []byte("/api/items?page=2"),
		FullURI: []byte("/shop/api/items?page=2"), Host: []byte("example.com"),
		RemoteAddr: []byte("203.0.113.9:53122")}
	for _, h := range [][2]string{
		{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"},
		{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		{"Accept-Encoding", "gzip, deflate, br"},
		{"Accept-Language", "en-US,en;q=0.5"},
		{"Cookie", "session=3f2a9c1e8b7d6f5a4c3b2a1908f7e6d5"},
		{"X-Forwarded-For", "198.51.100.4"},
	} {
		r.AddHeader([]byte(h[0]), []byte(h[1]))
	}
	return r
}

func benchResponse() []byte {
	return AppendResponse(nil, &Response{Status: 200, Headers: []Header{
		{Name: []byte("Content-Type"), Value: []byte("application/json")},
		{Name: []byte("Cache-Control"), Value: []byte("no-store")},
		{Name: []byte("Set-Cookie"), Value: []byte("a=1; Path=/")},
		{Name: []byte("Set-Cookie"), Value: []byte("b=2; Path=/")},
	}, Body: bytes.Repeat([]byte(`{"id":1,"name":"item"},`), 40)})
}

// TestNoAllocations is the correctness twin of the benchmarks: encode and decode allocate nothing
// once the buffers have grown.
func TestNoAllocations(t *testing.T) {
	r := benchRequest()
	buf := make([]byte, 0, RequestSize(r))
	if n := testing.AllocsPerRun(100, func() { buf = AppendRequest(buf[:0], r) }); n != 0 {
		t.Errorf("AppendRequest: %v allocs; want 0", n)
	}
	enc := benchResponse()
	resp := Response{Headers: make([]Header, 0, 8)}
	if n := testing.AllocsPerRun(100, func() {
		if err := DecodeResponse(enc, &resp); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("DecodeResponse: %v allocs; want 0", n)
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	r := benchRequest()
	buf := make([]byte, 0, RequestSize(r))
	b.SetBytes(int64(RequestSize(r)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequest(buf[:0], r)
	}
}

func BenchmarkDecodeResponse(b *testing.B) {
	enc := benchResponse()
	var resp Response
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeResponse(enc, &resp); err != nil {
			b.Fatal(err)
		}
	}
}
