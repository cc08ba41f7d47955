package abi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// vectors are encodings computed from docs/abi.md independently of this package; the host codec
// (pool/abi) checks itself against the same file.
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
	data, err := os.ReadFile("testdata/vectors.json")
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

func headers(hs [][2]string) []Header {
	out := []Header{}
	for _, h := range hs {
		out = append(out, Header{Name: h[0], Value: h[1]})
	}
	return out
}

func TestRequestVectors(t *testing.T) {
	for _, v := range loadVectors(t).Requests {
		t.Run(v.Name, func(t *testing.T) {
			enc, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			want := Request{Method: v.Method, URI: v.URI, FullURI: v.FullURI, Host: v.Host,
				RemoteAddr: v.RemoteAddr, Headers: headers(v.Headers), Body: []byte(v.Body)}
			got := Request{Headers: []Header{}}
			if err := DecodeRequest(enc, &got); err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeRequest:\ngot  %+v\nwant %+v", got, want)
			}
			if b := AppendRequest(nil, &want); !bytes.Equal(b, enc) {
				t.Errorf("AppendRequest:\ngot  %x\nwant %x", b, enc)
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
			want := Response{Status: v.Status, Headers: headers(v.Headers), Body: []byte(v.Body)}
			if b := AppendResponse(nil, &want); !bytes.Equal(b, enc) {
				t.Errorf("AppendResponse:\ngot  %x\nwant %x", b, enc)
			}
			got := Response{Headers: []Header{}}
			if err := DecodeResponse(enc, &got); err != nil {
				t.Fatalf("DecodeResponse: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeResponse:\ngot  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestRequestLayout spells out one encoding byte by byte, as docs/abi.md lays it out.
func TestRequestLayout(t *testing.T) {
	enc := []byte{
		1, 0, 0, 0, // version
		3, 0, 0, 0, 'G', 'E', 'T', // method
		2, 0, 0, 0, '/', 'a', // uri
		4, 0, 0, 0, '/', 'f', '/', 'a', // full_uri
		1, 0, 0, 0, 'h', // host
		0, 0, 0, 0, // remote_addr
		1, 0, 0, 0, // header_count
		1, 0, 0, 0, 'k', 2, 0, 0, 0, 'v', 'w', // name, value
		1, 0, 0, 0, 'B', // body
	}
	var r Request
	if err := DecodeRequest(enc, &r); err != nil {
		t.Fatal(err)
	}
	want := Request{Method: "GET", URI: "/a", FullURI: "/f/a", Host: "h",
		Headers: []Header{{"k", "vw"}}, Body: []byte("B")}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v; want %+v", r, want)
	}
}

func TestDecodeRequestKeepsCapacityAndCopiesStrings(t *testing.T) {
	in := &Request{Method: "GET", URI: "/", Headers: []Header{{"A", "1"}, {"B", "2"}}, Body: []byte("x")}
	enc := AppendRequest(nil, in)
	r := Request{Headers: make([]Header, 0, 8)}
	headersAt := &r.Headers[:1][0]
	if err := DecodeRequest(enc, &r); err != nil {
		t.Fatal(err)
	}
	if &r.Headers[0] != headersAt {
		t.Error("Headers was reallocated although its capacity sufficed")
	}
	for i := range enc {
		enc[i] = '!'
	}
	if r.Method != "GET" || r.Headers[1].Value != "2" {
		t.Errorf("strings changed with the buffer: %+v", r)
	}
	if string(r.Body) != "!" {
		t.Errorf("Body = %q; want it to alias the buffer", r.Body)
	}
}

func TestDecodeRequestMalformed(t *testing.T) {
	valid := AppendRequest(nil, &Request{Method: "GET", URI: "/", Headers: []Header{{"a", "b"}}, Body: []byte("body")})
	le := func(v uint32) []byte { return AppendU32(nil, v) }
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"empty", "version truncated at offset 0", nil},
		{"wrong version", "unsupported version 2 at offset 0", append(le(2), valid[4:]...)},
		{"truncated method length", "method length truncated at offset 4", valid[:6]},
		{"method past end", "method length 100 past end", append(le(1), le(100)...)},
		{"header count past end", "header_count 1000 past end", func() []byte {
			b := AppendRequest(nil, &Request{})
			PutU32(b[len(b)-8:], 1000)
			return b
		}()},
		{"truncated body", "body length 4 past end", valid[:len(valid)-1]},
		{"body missing", "body length truncated", valid[:len(valid)-8]},
		{"trailing bytes", "2 trailing bytes", append(append([]byte{}, valid...), 0, 0)},
		{"huge length", "method length 4294967295 past end", append(le(1), le(0xffffffff)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			err := DecodeRequest(tc.in, &r)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v; want an error wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDecodeResponseMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"status out of range", "status 99 out of range", AppendResponse(nil, &Response{Status: 99})},
		{"status 1000", "status 1000 out of range", AppendResponse(nil, &Response{Status: 1000})},
		{"truncated", "body length truncated at offset 8", AppendResponse(nil, &Response{Status: 200})[:9]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := DecodeResponse(tc.in, &Response{})
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendRequest(nil, &Request{Method: "GET", URI: "/", Headers: []Header{{"a", "b"}}, Body: []byte("x")}))
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if err := DecodeRequest(b, &r); err != nil {
			return
		}
		if again := AppendRequest(nil, &r); !bytes.Equal(again, b) {
			t.Errorf("re-encoding a decoded request changed it:\nin  %x\nout %x", b, again)
		}
	})
}
