package loadtest

import (
	"strings"
	"testing"
)

// parseAll feeds resp to a parser in pieces of at most step bytes and
// returns the status, keep-alive and the bytes left unused after the
// response.
func parseAll(t *testing.T, p *respParser, resp string, step int) (status int, keep bool, rest int, err error) {
	t.Helper()
	p.reset()
	data := []byte(resp)
	for len(data) > 0 {
		n := min(step, len(data))
		used, done, err := p.feed(data[:n])
		if err != nil {
			return 0, false, 0, err
		}
		data = data[used:]
		if done {
			return p.status, p.keepAlive, len(data), nil
		}
		if used != n {
			t.Fatalf("feed used %d of %d bytes without completing", used, n)
		}
	}
	if p.eof() {
		return p.status, p.keepAlive, 0, nil
	}
	return 0, false, 0, errIncomplete
}

type parseErr string

func (e parseErr) Error() string { return string(e) }

const errIncomplete = parseErr("incomplete response")

func TestParser(t *testing.T) {
	tests := []struct {
		name   string
		head   bool
		resp   string
		status int
		keep   bool
		rest   int
		err    error
	}{
		{name: "content length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, keep: true},
		{name: "no reason phrase", resp: "HTTP/1.1 204\r\n\r\n", status: 204, keep: true},
		{name: "http/1.0 closes", resp: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", status: 200},
		{name: "http/1.0 keep-alive", resp: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi", status: 200, keep: true},
		{name: "connection close", resp: "HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\ncontent-length: 3\r\n\r\nerr", status: 500},
		{name: "chunked", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", status: 200, keep: true},
		{name: "chunked with trailer", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n", status: 200, keep: true},
		{name: "bare line feeds", resp: "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", status: 200, keep: true},
		{name: "interim 100", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", status: 201, keep: true},
		{name: "head ignores length", head: true, resp: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", status: 200, keep: true},
		{name: "not modified has no body", resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", status: 304, keep: true},
		{name: "body until close", resp: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200},
		{name: "bytes after the response", resp: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA", status: 200, keep: true, rest: 5},
		{name: "not http", resp: "SSH-2.0-OpenSSH\r\n\r\n", err: errMalformed},
		{name: "bad status", resp: "HTTP/1.1 2x0 OK\r\n\r\n", err: errMalformed},
		{name: "bad length", resp: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: errMalformed},
		{name: "header without colon", resp: "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", err: errMalformed},
		{name: "bad chunk size", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: errMalformed},
		{name: "chunk without line end", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", err: errMalformed},
		{name: "truncated body", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", err: errIncomplete},
		{name: "truncated head", resp: "HTTP/1.1 200 OK\r\nContent-Le", err: errIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every split of the response must parse the same.
			for step := 1; step <= len(tt.resp); step++ {
				p := &respParser{head: tt.head}
				status, keep, rest, err := parseAll(t, p, tt.resp, step)
				if err != tt.err {
					t.Fatalf("step %d: got error %v; want %v", step, err, tt.err)
				}
				if err != nil {
					continue
				}
				if status != tt.status || keep != tt.keep || rest != tt.rest {
					t.Fatalf("step %d: got status %d keep-alive %v rest %d; want %d %v %d",
						step, status, keep, rest, tt.status, tt.keep, tt.rest)
				}
			}
		})
	}
}

func TestParserHeadTooLarge(t *testing.T) {
	p := &respParser{}
	resp := "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n"
	if _, _, _, err := parseAll(t, p, resp, 4096); err != errMalformed {
		t.Fatalf("got error %v; want %v", err, errMalformed)
	}
}

func TestParserReuse(t *testing.T) {
	p := &respParser{}
	for range 3 {
		for _, resp := range []string{
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
		} {
			if _, _, _, err := parseAll(t, p, resp, 7); err != nil {
				t.Fatalf("%q: %v", resp, err)
			}
		}
	}
	if p.status != 404 {
		t.Fatalf("got status %d; want 404", p.status)
	}
}

func TestParseUint(t *testing.T) {
	f := func(in string, base int64, want int64, ok bool) {
		t.Helper()
		got, gotOK := parseUint([]byte(in), base)
		if got != want || gotOK != ok {
			t.Errorf("parseUint(%q, %d) = %d, %v; want %d, %v", in, base, got, gotOK, want, ok)
		}
	}
	f("0", 10, 0, true)
	f("1234", 10, 1234, true)
	f("ff", 16, 255, true)
	f("FF", 16, 255, true)
	f("ff", 10, 0, false)
	f("", 10, 0, false)
	f("-1", 10, 0, false)
	f("1234567890123456", 10, 0, false)
}

func BenchmarkParser(b *testing.B) {
	resp := []byte("HTTP/1.1 200 OK\r\nServer: hertz\r\nDate: Thu, 26 Nov 2026 00:08:58 GMT\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\n\r\nHello WASM from Golang!")
	p := &respParser{}
	b.ReportAllocs()
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		p.reset()
		if _, done, err := p.feed(resp); !done || err != nil {
			b.Fatalf("got done %v, error %v", done, err)
		}
	}
}
