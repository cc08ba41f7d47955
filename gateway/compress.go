package gateway

import (
	"bytes"
	"sync"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// minCompressBytes is the smallest body worth compressing: below it the framing overhead and
// the CPU cost outweigh the bytes saved.
const minCompressBytes = 1024

type encoding uint8

const (
	encIdentity encoding = iota
	encGzip
	encZstd
)

// zstdEncoder is shared: EncodeAll is safe for concurrent use.
var zstdEncoder, _ = zstd.NewWriter(nil,
	zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(1),
	zstd.WithWindowSize(1<<20),
	zstd.WithZeroFrames(true))

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// writeBody sets the response body, compressed with the best encoding the client accepts when
// the body is large enough and its type compresses.
func writeBody(rc *app.RequestContext, body []byte) {
	h := &rc.Response.Header
	enc := encIdentity
	if len(body) >= minCompressBytes && len(h.ContentEncoding()) == 0 && compressible(h.ContentType()) {
		enc = acceptedEncoding(rc.Request.Header.Peek("Accept-Encoding"))
	}
	switch enc {
	case encZstd:
		bb := rc.Response.BodyBuffer()
		bb.B = zstdEncoder.EncodeAll(body, bb.B[:0])
		h.SetContentEncodingBytes(strZstd)
		h.AddArgBytes(strVary, strAcceptEncoding, false)
	case encGzip:
		bb := rc.Response.BodyBuffer()
		bb.B = bb.B[:0]
		w := gzipWriters.Get().(*gzip.Writer)
		w.Reset(bb)
		_, _ = w.Write(body)
		_ = w.Close()
		w.Reset(nil)
		gzipWriters.Put(w)
		h.SetContentEncodingBytes(strGzip)
		h.AddArgBytes(strVary, strAcceptEncoding, false)
	default:
		rc.Response.SetBody(body)
	}
}

var (
	strZstd           = []byte("zstd")
	strGzip           = []byte("gzip")
	strVary           = []byte("Vary")
	strAcceptEncoding = []byte("Accept-Encoding")
)

// acceptedEncoding picks zstd over gzip from an Accept-Encoding value, honouring q=0.
func acceptedEncoding(v []byte) encoding {
	best := encIdentity
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		name, params := tok, []byte(nil)
		if i := bytes.IndexByte(tok, ';'); i >= 0 {
			name, params = tok[:i], tok[i+1:]
		}
		name = bytes.TrimSpace(name)
		if qZero(params) {
			continue
		}
		switch {
		case equalFold(name, "zstd"):
			best = encZstd
		case equalFold(name, "gzip") && best == encIdentity:
			best = encGzip
		}
	}
	return best
}

// qZero reports whether parameters say q=0 (the encoding is refused).
func qZero(params []byte) bool {
	p := bytes.TrimSpace(params)
	if len(p) < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
		return false
	}
	q := bytes.TrimRight(p[2:], "0 ")
	return len(q) == 0 || string(q) == "0." || string(q) == "0"
}

// compressible reports whether a content type is worth compressing; an absent type is
// treated as text (the gateway's default).
func compressible(ct []byte) bool {
	if len(ct) == 0 {
		return true
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	switch {
	case bytes.HasPrefix(ct, []byte("text/")):
		return true
	case bytes.HasSuffix(ct, []byte("+json")), bytes.HasSuffix(ct, []byte("+xml")):
		return true
	}
	switch string(ct) {
	case "application/json", "application/javascript", "application/xml", "application/wasm",
		"application/x-ndjson", "image/svg+xml":
		return true
	}
	return false
}
