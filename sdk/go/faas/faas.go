// Package faas connects a Go function to the Wisp host: main calls Start with the handler that
// serves every request sent to the instance.
//
// A function is built with `wisp build`, which targets GOOS=wasip1 GOARCH=wasm as a WASI reactor
// and exports the guest ABI of docs/abi.md. An instance serves one request at a time; the handler
// may keep state in package variables across requests of one instance, but the host may discard
// an instance and start a new one at any time.
package faas

import (
	"fmt"
	"io"
	"net/url"
	"runtime"
	"slices"

	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/internal/abi"
	"github.com/wispfn/wisp/sdk/go/internal/body"
)

// handler is the function Start recorded; nil until then.
var handler func(*http.Request) *http.Response

// Per-instance state reused across requests. The host calls into the guest one call at a time,
// so nothing here needs a lock.
var (
	decoded abi.Request // reused for its Headers capacity
	respBuf []byte      // the last response; valid until the next call into the guest
)

// maxStack bounds the stack trace appended to a panic message.
const maxStack = 4 << 10

// serve handles the encoded request in and returns the encoded response, which aliases respBuf.
// in is only read, and only during the call.
func serve(in []byte) []byte {
	out := respBuf[:0]
	if handler == nil {
		out = failure(out, "faas.Start was not called")
	} else {
		out = handle(out, in)
	}
	respBuf = out
	return out
}

func handle(out, in []byte) []byte {
	if err := abi.DecodeRequest(in, &decoded); err != nil {
		return failure(out, "cannot decode request: "+err.Error())
	}
	req, reqBody, err := newRequest(&decoded)
	if err != nil {
		return badRequest(out, "malformed request URI: "+err.Error())
	}
	out, msg := run(out, req)
	// The request bytes belong to the host once this call returns.
	reqBody.Detach()
	if msg != "" {
		return failure(out, msg)
	}
	return out
}

// run calls the handler and encodes its response into out, turning a panic in either into a
// failure message.
func run(out []byte, req *http.Request) (res []byte, msg string) {
	res = out
	defer func() {
		if v := recover(); v != nil {
			buf := make([]byte, maxStack)
			buf = buf[:runtime.Stack(buf, false)]
			msg = "panic: " + fmt.Sprint(v) + "\n\n" + string(buf)
		}
	}()
	res = encode(out, handler(req))
	return res, ""
}

// request holds a Request with its body reader, URL and the values of its first headers in one
// allocation: every allocation costs a Go guest hundreds of nanoseconds, more than the rest of
// decoding a request.
type request struct {
	http.Request
	body body.Bytes
	url  url.URL
	vals [8]string
}

// newRequest builds the handler's Request from r. Strings are shared with r (they are copies of
// the host's buffer); the body reads r.Body in place.
func newRequest(r *abi.Request) (*http.Request, *body.Bytes, error) {
	x := &request{}
	if err := parseRequestURI(&x.url, r.URI); err != nil {
		return nil, nil, err
	}
	x.body.Reset(r.Body)
	h := make(http.Header, len(r.Headers))
	// Values share one backing array; each key's slice is capped so that Add reallocates
	// instead of overwriting the next key's value.
	vals := x.vals[:]
	if len(r.Headers) > len(vals) {
		vals = make([]string, len(r.Headers))
	}
	for i, hd := range r.Headers {
		key := http.CanonicalHeaderKey(hd.Name)
		if key == "Host" {
			continue
		}
		if v, ok := h[key]; ok {
			h[key] = append(v, hd.Value)
			continue
		}
		vals[i] = hd.Value
		h[key] = vals[i : i+1 : i+1]
	}
	x.Request = http.Request{
		Method:        r.Method,
		URL:           &x.url,
		RequestURI:    r.FullURI,
		Header:        h,
		Host:          r.Host,
		RemoteAddr:    r.RemoteAddr,
		ContentLength: int64(len(r.Body)),
		Body:          &x.body,
	}
	return &x.Request, &x.body, nil
}

// parseRequestURI sets u to what url.ParseRequestURI(uri) returns, without allocating for the
// common URI: a path of characters that need no escaping, and an optional query. Others go
// through url.ParseRequestURI.
func parseRequestURI(u *url.URL, uri string) error {
	path, query, hasQuery := uri, "", false
	for i := 0; i < len(uri); i++ {
		if uri[i] == '?' {
			path, query, hasQuery = uri[:i], uri[i+1:], true
			break
		}
	}
	if !plainPath(path) || !plainQuery(query) {
		v, err := url.ParseRequestURI(uri)
		if err != nil {
			return err
		}
		*u = *v
		return nil
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return nil
}

// plainPath reports whether p is an absolute path that url.URL keeps as it is: no escapes, and
// only characters its path encoding leaves alone, so RawPath stays empty.
func plainPath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '~' || c == '/':
		case c == '$' || c == '&' || c == '+' || c == ',' || c == ':' || c == ';' || c == '=' || c == '@':
		default:
			return false
		}
	}
	return true
}

// plainQuery reports whether q holds no byte that url.ParseRequestURI refuses (ASCII control
// characters) or reads differently (a '#').
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c < 0x20 || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// encode appends the encoding of resp to out.
func encode(out []byte, resp *http.Response) []byte {
	if resp == nil {
		return failure(out, "handler returned a nil *http.Response")
	}
	status := resp.StatusCode
	if status == 0 {
		status = 200
	}
	if status < 100 || status > 999 {
		return failure(out, fmt.Sprintf("handler returned invalid status code %d", resp.StatusCode))
	}
	out = abi.AppendU32(out, uint32(status))
	n := 0
	for _, vs := range resp.Header {
		n += len(vs)
	}
	out = abi.AppendU32(out, uint32(n))
	for k, vs := range resp.Header {
		for _, v := range vs {
			out = abi.AppendString(out, k)
			out = abi.AppendString(out, v)
		}
	}
	switch b := resp.Body.(type) {
	case nil:
		return abi.AppendU32(out, 0)
	case *body.Bytes:
		return abi.AppendBytes(out, b.Unread())
	default:
		var err error
		out, err = appendReader(out, b)
		b.Close()
		if err != nil {
			return failure(out, "cannot read response body: "+err.Error())
		}
		return out
	}
}

// appendReader appends everything r yields, as a str, to out.
func appendReader(out []byte, r io.Reader) ([]byte, error) {
	at := len(out)
	out = abi.AppendU32(out, 0)
	for {
		if cap(out)-len(out) < 512 {
			out = slices.Grow(out, cap(out)+4096)
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, err
		}
	}
	size := uint64(len(out) - at - 4)
	if size > 1<<32-1 {
		return out, fmt.Errorf("body of %d bytes is longer than 4 GiB", size)
	}
	abi.PutU32(out[at:], uint32(size))
	return out, nil
}

// failure replaces out with a status 0 response carrying msg.
func failure(out []byte, msg string) []byte {
	out = abi.AppendU32(out[:0], 0)
	out = abi.AppendU32(out, 0)
	return abi.AppendString(out, msg)
}

// badRequest replaces out with a 400 response carrying msg.
func badRequest(out []byte, msg string) []byte {
	out = abi.AppendU32(out[:0], 400)
	out = abi.AppendU32(out, 1)
	out = abi.AppendString(out, "Content-Type")
	out = abi.AppendString(out, "text/plain; charset=utf-8")
	return abi.AppendString(out, msg)
}
