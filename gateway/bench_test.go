package gateway_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkGatewayHello is one request through the real gateway on loopback: Hertz parses it,
// routes it, the pool runs the hello guest on a warm instance, and the response goes back. The
// client is a bare kept-alive connection, so allocations reported are the server's plus a few
// of the client's reads.
func BenchmarkGatewayHello(b *testing.B) {
	s := startServer(b, b.TempDir(), 0)
	s.mustDeploy("hello", "hello", "")
	benchHello(b, s.url)
}

// benchHello times GET /hello/ round trips to url on one kept-alive connection, after one
// untimed request (the cold start is not what it measures).
func benchHello(b *testing.B, url string) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET /hello/ HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	r := bufio.NewReaderSize(conn, 4096)
	body := make([]byte, 64)
	roundTrip := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		n, err := readResponse(r, body)
		if err != nil {
			b.Fatal(err)
		}
		if string(body[:n]) != "Hello WASM from Golang!" {
			b.Fatalf("body %q", body[:n])
		}
	}
	roundTrip()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
}

// readResponse reads one HTTP/1.1 response with a Content-Length into body and returns the body
// length; it fails on any status but 200.
func readResponse(r *bufio.Reader, body []byte) (int, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
		return 0, &net.OpError{Op: "read", Err: io.ErrUnexpectedEOF}
	}
	length := -1
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && http.CanonicalHeaderKey(string(k)) == "Content-Length" {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length < 0 || length > len(body) {
		return 0, io.ErrShortBuffer
	}
	_, err = io.ReadFull(r, body[:length])
	return length, err
}
