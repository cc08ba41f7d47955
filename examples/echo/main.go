// Command echo is a Wisp function that describes the request it gets, for tests and benchmarks:
//
//	/status/NNN   answers status NNN
//	/big?n=BYTES  answers BYTES bytes of repeated text
//	anything else answers JSON with the method, path, query, request URI, host, remote address,
//	              headers, body length and SHA-256, and the variables named by ?env=NAME
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/http"
)

func main() { faas.Start(handle) }

// Echo is the JSON answer.
type Echo struct {
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	RawQuery      string              `json:"raw_query"`
	RequestURI    string              `json:"request_uri"`
	Host          string              `json:"host"`
	RemoteAddr    string              `json:"remote_addr"`
	Headers       map[string][]string `json:"headers"`
	BodyLength    int                 `json:"body_length"`
	ContentLength int64               `json:"content_length"`
	BodySHA256    string              `json:"body_sha256"`
	Env           map[string]string   `json:"env,omitempty"`
}

func handle(r *http.Request) *http.Response {
	switch path := r.URL.Path; {
	case strings.HasPrefix(path, "/status/"):
		code, err := strconv.Atoi(strings.TrimPrefix(path, "/status/"))
		if err != nil || code < 100 || code > 999 {
			return text(400, "bad status "+strconv.Quote(path[len("/status/"):])+"\n")
		}
		return text(code, "status "+strconv.Itoa(code)+"\n")
	case path == "/big":
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 {
			return text(400, "bad n: want /big?n=BYTES\n")
		}
		return &http.Response{
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:   http.MustNewBody(big(n)),
		}
	}

	body, err := io.ReadAll(r.Body)
	if err != nil {
		return text(500, "cannot read body: "+err.Error()+"\n")
	}
	sum := sha256.Sum256(body)
	e := Echo{
		Method:        r.Method,
		Path:          r.URL.Path,
		RawQuery:      r.URL.RawQuery,
		RequestURI:    r.RequestURI,
		Host:          r.Host,
		RemoteAddr:    r.RemoteAddr,
		Headers:       r.Header,
		BodyLength:    len(body),
		BodySHA256:    hex.EncodeToString(sum[:]),
		ContentLength: r.ContentLength,
	}
	for _, name := range r.URL.Query()["env"] {
		if e.Env == nil {
			e.Env = map[string]string{}
		}
		e.Env[name] = os.Getenv(name)
	}
	out, err := json.Marshal(e)
	if err != nil {
		return text(500, "cannot encode: "+err.Error()+"\n")
	}
	return &http.Response{
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   http.MustNewBody(out),
	}
}

func text(status int, s string) *http.Response {
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:       http.MustNewBody([]byte(s)),
	}
}

// big returns n bytes of a repeated, compressible line.
func big(n int) []byte {
	const line = "Wisp echo /big: the quick brown fox jumps over the lazy dog 0123456789\n"
	b := make([]byte, n)
	for i := 0; i < n; i += len(line) {
		copy(b[i:], line)
	}
	return b
}
