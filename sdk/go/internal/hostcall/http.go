package hostcall

import (
	"io"

	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/internal/body"
)

// AppendHeader appends h as a u32 count of entries, then name and value strs, one entry per
// value (the encoding of fetch and rpc requests).
func AppendHeader(dst []byte, h http.Header) []byte {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	dst = AppendU32(dst, uint32(n))
	for k, vs := range h {
		for _, v := range vs {
			dst = AppendString(AppendString(dst, k), v)
		}
	}
	return dst
}

// AppendBody appends b's unread bytes as a str, and closes b. A nil b is an empty body.
func AppendBody(dst []byte, b http.Body) ([]byte, error) {
	switch b := b.(type) {
	case nil:
		return AppendU32(dst, 0), nil
	case *body.Bytes:
		return AppendBytes(dst, b.Unread()), nil
	default:
		data, err := io.ReadAll(b)
		b.Close()
		if err != nil {
			return dst, err
		}
		return AppendBytes(dst, data), nil
	}
}

// DecodeResponse decodes an HTTP-shaped result (u32 status, headers, str body) into a Response
// whose body reads the result in place.
func DecodeResponse(result []byte) (*http.Response, error) {
	d := NewDecoder(result)
	status := int(d.U32())
	n := d.Count(8)
	h := make(http.Header, n)
	for range n {
		k := d.Str()
		h.Add(k, d.Str())
	}
	b := d.Bytes()
	if err := d.Err(); err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: status, Header: h, Body: body.New(b)}, nil
}
