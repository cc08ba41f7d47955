package loadtest

import (
	"bytes"
	"errors"
)

// maxHead bounds a response's status line and headers.
const maxHead = 64 << 10

var errMalformed = errors.New("malformed HTTP response")

type parseState uint8

const (
	stHead       parseState = iota // status line and headers
	stLength                       // body of known length
	stChunkSize                    // chunk-size line
	stChunkData                    // chunk bytes
	stChunkCRLF                    // line end after a chunk
	stTrailer                      // trailer lines, up to the empty one
	stUntilClose                   // body without a length: everything up to EOF
	stDone
)

// respParser reads one HTTP/1.x response fed to it in pieces, as they come
// off the connection. It keeps the status and whether the connection stays
// open, and discards the body without copying it. Its buffers are reused
// from one response to the next; not safe for concurrent use.
type respParser struct {
	head bool // the request was HEAD: no body whatever the headers say

	state     parseState
	status    int
	keepAlive bool
	remaining int64
	buf       []byte // partial head or chunk-size line, across feeds
}

// reset prepares p for the next response.
func (p *respParser) reset() {
	p.state = stHead
	p.status = 0
	p.keepAlive = false
	p.remaining = 0
	p.buf = p.buf[:0]
}

// feed consumes bytes of the response and reports how many it used and
// whether the response is complete. Bytes after a complete response are
// left unused.
func (p *respParser) feed(data []byte) (n int, done bool, err error) {
	for n < len(data) && p.state != stDone {
		rest := data[n:]
		switch p.state {
		case stHead:
			used, err := p.feedHead(rest)
			if err != nil {
				return n, false, err
			}
			n += used
		case stLength, stChunkData:
			k := int64(len(rest))
			if k > p.remaining {
				k = p.remaining
			}
			n += int(k)
			p.remaining -= k
			if p.remaining == 0 {
				if p.state == stLength {
					p.state = stDone
				} else {
					p.state = stChunkCRLF
				}
			}
		case stChunkSize, stChunkCRLF, stTrailer:
			line, used, ok := p.line(rest)
			n += used
			if !ok {
				if len(p.buf) > maxHead {
					return n, false, errMalformed
				}
				continue
			}
			if err := p.endLine(line); err != nil {
				return n, false, err
			}
		case stUntilClose:
			n = len(data)
		}
	}
	return n, p.state == stDone, nil
}

// eof tells p that the connection was closed; it completes a body that runs
// to the end of the connection and is an error anywhere else.
func (p *respParser) eof() (done bool) {
	if p.state == stUntilClose {
		p.state = stDone
		return true
	}
	return p.state == stDone
}

// line returns the next complete line (without its end) from data, joined
// to what earlier feeds left, and how many bytes of data it used.
func (p *respParser) line(data []byte) (line []byte, used int, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		p.buf = append(p.buf, data...)
		return nil, len(data), false
	}
	line = data[:i]
	if len(p.buf) > 0 {
		p.buf = append(p.buf, line...)
		line = p.buf
	}
	return trimCR(line), i + 1, true
}

func (p *respParser) endLine(line []byte) error {
	defer func() { p.buf = p.buf[:0] }()
	switch p.state {
	case stChunkSize:
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseUint(bytes.TrimSpace(line), 16)
		if !ok {
			return errMalformed
		}
		if size == 0 {
			p.state = stTrailer
		} else {
			p.state, p.remaining = stChunkData, size
		}
	case stChunkCRLF:
		if len(line) != 0 {
			return errMalformed
		}
		p.state = stChunkSize
	case stTrailer:
		if len(line) == 0 {
			p.state = stDone
		}
	}
	return nil
}

// feedHead consumes head bytes; once the empty line ending the head is in,
// it parses the head and moves on to the body.
func (p *respParser) feedHead(data []byte) (used int, err error) {
	var head []byte
	if len(p.buf) == 0 {
		if end := headEnd(data); end > 0 {
			head, used = data[:end], end // the whole head in one piece: no copy
		}
	}
	if head == nil {
		from := max(len(p.buf)-3, 0)
		p.buf = append(p.buf, data...)
		end := headEnd(p.buf[from:])
		if end < 0 {
			if len(p.buf) > maxHead {
				return len(data), errMalformed
			}
			return len(data), nil
		}
		end += from
		used = len(data) - (len(p.buf) - end)
		head = p.buf[:end]
	}
	if len(head) > maxHead {
		return used, errMalformed
	}
	length, chunked, err := p.parseHead(head)
	p.buf = p.buf[:0]
	if err != nil {
		return used, err
	}
	switch {
	case p.status < 200 && p.status != 101:
		p.status = 0 // interim response: the final one follows
	case p.head || p.status < 200 || p.status == 204 || p.status == 304:
		p.state = stDone
	case chunked:
		p.state = stChunkSize
	case length == 0:
		p.state = stDone
	case length > 0:
		p.state, p.remaining = stLength, length
	default:
		p.state, p.keepAlive = stUntilClose, false
	}
	return used, nil
}

// headEnd returns the length of the head in b, its ending empty line
// included, or -1 if b does not hold a whole head.
func headEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return -1
}

// parseHead reads the status line and the headers that frame the body.
// length is -1 when the head gives none.
func (p *respParser) parseHead(head []byte) (length int64, chunked bool, err error) {
	i := bytes.IndexByte(head, '\n')
	line := trimCR(head[:i])
	head = head[i+1:]
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, false, errMalformed
	}
	status, ok := parseUint(line[9:12], 10)
	if !ok {
		return 0, false, errMalformed
	}
	p.status = int(status)
	p.keepAlive = line[7] == '1'
	length = -1
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		line, head = trimCR(head[:i]), head[i+1:]
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false, errMalformed
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, ok := parseUint(value, 10)
			if !ok {
				return 0, false, errMalformed
			}
			length = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = len(value) >= 7 && asciiEqualFold(value[len(value)-7:], "chunked")
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(value, "close") {
				p.keepAlive = false
			} else if asciiEqualFold(value, "keep-alive") {
				p.keepAlive = true
			}
		}
	}
	return length, chunked, nil
}

// parseUint parses a non-negative decimal or hexadecimal number of at most
// 15 digits, without allocating.
func parseUint(b []byte, base int64) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		var d int64
		switch {
		case '0' <= ch && ch <= '9':
			d = int64(ch - '0')
		case base == 16 && 'a' <= ch && ch <= 'f':
			d = int64(ch-'a') + 10
		case base == 16 && 'A' <= ch && ch <= 'F':
			d = int64(ch-'A') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// asciiEqualFold reports whether b equals s, ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
