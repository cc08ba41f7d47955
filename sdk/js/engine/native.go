package engine

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// natives returns the object of Go helpers the prelude is a function of.
func (e *Engine) natives(opt Options) *goja.Object {
	vm := e.vm
	start := time.Now()
	n := vm.NewObject()
	set := func(name string, fn func(goja.FunctionCall) goja.Value) {
		if err := n.Set(name, fn); err != nil {
			panic(err)
		}
	}
	set("utf8Encode", func(c goja.FunctionCall) goja.Value {
		return vm.ToValue(vm.NewArrayBuffer([]byte(c.Argument(0).String())))
	})
	set("utf8Decode", func(c goja.FunctionCall) goja.Value {
		s := string(e.bytes(c.Argument(0), c.Argument(1), c.Argument(2)))
		if !c.Argument(4).ToBoolean() {
			s = strings.TrimPrefix(s, "\ufeff")
		}
		if !utf8.ValidString(s) {
			if c.Argument(3).ToBoolean() {
				panic(vm.NewTypeError("TextDecoder: the data is not valid utf-8"))
			}
			s = strings.ToValidUTF8(s, "\ufffd")
		}
		return vm.ToValue(s)
	})
	set("btoa", func(c goja.FunctionCall) goja.Value {
		s := c.Argument(0).String()
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return goja.Null()
			}
			b = append(b, byte(r))
		}
		return vm.ToValue(base64.StdEncoding.EncodeToString(b))
	})
	set("atob", func(c goja.FunctionCall) goja.Value {
		b, ok := forgivingBase64(c.Argument(0).String())
		if !ok {
			return goja.Null()
		}
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return vm.ToValue(string(r))
	})
	set("write", func(c goja.FunctionCall) goja.Value {
		w := opt.Stdout
		if c.Argument(0).ToInteger() == 2 {
			w = opt.Stderr
		}
		io.WriteString(w, c.Argument(1).String()+"\n")
		return goja.Undefined()
	})
	set("now", func(goja.FunctionCall) goja.Value {
		return vm.ToValue(float64(time.Since(start).Nanoseconds()) / 1e6)
	})
	set("randomFill", func(c goja.FunctionCall) goja.Value {
		rand.Read(e.bytes(c.Argument(0), c.Argument(1), c.Argument(2)))
		return goja.Undefined()
	})
	set("randomUUID", func(goja.FunctionCall) goja.Value {
		var u [16]byte
		rand.Read(u[:])
		u[6] = u[6]&0x0f | 0x40
		u[8] = u[8]&0x3f | 0x80
		return vm.ToValue(fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
	})
	set("headerName", func(c goja.FunctionCall) goja.Value {
		v := c.Argument(0)
		s := v.String()
		if !isToken(s) {
			panic(vm.NewTypeError(fmt.Sprintf("Invalid header name: %q", s)))
		}
		for i := 0; i < len(s); i++ {
			if 'A' <= s[i] && s[i] <= 'Z' {
				return vm.ToValue(strings.ToLower(s))
			}
		}
		return v
	})
	set("headerValue", func(c goja.FunctionCall) goja.Value {
		v := c.Argument(0)
		s := v.String()
		t := strings.Trim(s, " \t\r\n")
		if strings.ContainsAny(t, "\x00\r\n") {
			panic(vm.NewTypeError(fmt.Sprintf("Invalid header value: %q", s)))
		}
		if len(t) == len(s) {
			return v
		}
		return vm.ToValue(t)
	})
	set("isToken", func(c goja.FunctionCall) goja.Value {
		return vm.ToValue(isToken(c.Argument(0).String()))
	})
	set("respond", e.respond)
	set("fail", e.fail)
	set("fetch", e.fetch)
	set("kvGet", e.kvGet)
	set("kvPut", e.kvPut)
	set("kvDelete", e.kvDelete)
	set("kvList", e.kvList)
	set("parseURL", func(c goja.FunctionCall) goja.Value {
		var base *string
		if b := c.Argument(1); !goja.IsUndefined(b) {
			s := b.String()
			base = &s
		}
		parts, err := parseURL(c.Argument(0).String(), base)
		if err != nil {
			panic(vm.NewTypeError(err.Error()))
		}
		vals := make([]any, len(parts))
		for i, p := range parts {
			vals[i] = p
		}
		return vm.NewArray(vals...)
	})
	set("percentDecode", func(c goja.FunctionCall) goja.Value {
		return vm.ToValue(strings.ToValidUTF8(percentDecode(c.Argument(0).String()), "\ufffd"))
	})
	env := vm.NewObject()
	keys := make([]string, 0, len(opt.Env))
	for k := range opt.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env.Set(k, opt.Env[k])
	}
	n.Set("env", env)
	return n
}

// bytes returns the bytes [off, off+n) of the ArrayBuffer buf, throwing a TypeError if buf is not
// one or the range lies outside it.
func (e *Engine) bytes(buf, off, n goja.Value) []byte {
	ab, ok := buf.Export().(goja.ArrayBuffer)
	if !ok {
		panic(e.vm.NewTypeError("expected an ArrayBuffer"))
	}
	b := ab.Bytes()
	o, l := off.ToInteger(), n.ToInteger()
	if o < 0 || l < 0 || o+l > int64(len(b)) {
		panic(e.vm.NewTypeError(fmt.Sprintf("range [%d, +%d) lies outside the buffer of %d bytes", o, l, len(b))))
	}
	return b[o : o+l]
}

// forgivingBase64 decodes s as the HTML standard's atob does: ASCII whitespace ignored, padding
// optional.
func forgivingBase64(s string) ([]byte, bool) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\f' || r == '\r' {
			return -1
		}
		return r
	}, s)
	if len(s)%4 == 0 {
		s = strings.TrimSuffix(s, "=")
		s = strings.TrimSuffix(s, "=")
	}
	if len(s)%4 == 1 || strings.ContainsRune(s, '=') {
		return nil, false
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	return b, err == nil
}

// percentDecode decodes the valid %XX escapes of s and keeps the rest as it is.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isToken reports whether s is an HTTP token (RFC 9110 5.6.2): a valid header name or method.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// randSource is Math.random's source: bytes from crypto/rand, drawn in blocks.
type randSource struct {
	buf  [256]byte
	left int
}

// reset discards the buffered bytes, so the next number comes from a fresh draw.
func (r *randSource) reset() { r.left = 0 }

func (r *randSource) float64() float64 {
	if r.left < 8 {
		rand.Read(r.buf[:])
		r.left = len(r.buf)
	}
	v := binary.LittleEndian.Uint64(r.buf[len(r.buf)-r.left:])
	r.left -= 8
	return float64(v>>11) / (1 << 53)
}

// specialPorts holds the schemes the URL standard calls special, with their default ports.
var specialPorts = map[string]string{"http": "80", "https": "443", "ws": "80", "wss": "443", "ftp": "21", "file": ""}

// parseURL parses input, resolved against base when base is not nil, into the parts the
// prelude's URL keeps: protocol, username, password, hostname, port, pathname, search, hash, and
// "1" when the URL has an authority ("//host"). It follows the URL standard where net/url
// differs in ways a handler would notice: lower-case scheme and host, default ports dropped,
// "/" for an empty path, dot segments removed, spaces and quotes in queries escaped. Hosts are
// not IDNA-mapped.
func parseURL(input string, base *string) ([9]string, error) {
	var parts [9]string
	u, err := resolveURL(input, base)
	if err != nil {
		return parts, err
	}
	_, special := specialPorts[u.Scheme]
	hostname, port := u.Host, ""
	if h, p, err := net.SplitHostPort(u.Host); err == nil {
		hostname, port = h, p
		if strings.Contains(h, ":") {
			hostname = "[" + h + "]"
		}
	}
	if special {
		hostname = strings.ToLower(hostname)
		if port == specialPorts[u.Scheme] {
			port = ""
		}
		if hostname == "" && u.Scheme != "file" {
			return parts, fmt.Errorf("Invalid URL %q: no host", input)
		}
	}
	if port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil {
			return parts, fmt.Errorf("Invalid URL %q: port %s is out of range", input, port)
		} else {
			port = strconv.FormatUint(n, 10)
		}
	}
	path := u.EscapedPath()
	if u.Opaque != "" {
		path = u.Opaque
	} else if special && path == "" {
		path = "/"
	}
	parts[0] = u.Scheme + ":"
	if u.User != nil {
		parts[1], parts[2], _ = strings.Cut(u.User.String(), ":")
	}
	parts[3], parts[4], parts[5] = hostname, port, path
	if u.RawQuery != "" {
		parts[6] = "?" + escapeQuery(u.RawQuery, special)
	}
	if u.Fragment != "" {
		parts[7] = "#" + u.EscapedFragment()
	}
	if special || u.Host != "" || u.User != nil {
		parts[8] = "1"
	}
	return parts, nil
}

// resolveURL parses input (without the characters the URL standard strips), resolved against base
// when it is relative, with dot segments removed.
func resolveURL(input string, base *string) (*url.URL, error) {
	clean := strings.TrimFunc(input, func(r rune) bool { return r <= ' ' })
	clean = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, clean)
	ref, err := url.Parse(clean)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("Invalid URL %q: %v", input, err)
	}
	if _, special := specialPorts[ref.Scheme]; special && ref.Opaque != "" {
		// "http:example.com/x" means "http://example.com/x".
		if ref, err = url.Parse(ref.Scheme + "://" + strings.TrimLeft(clean[len(ref.Scheme)+1:], "/")); err != nil {
			return nil, fmt.Errorf("Invalid URL %q: %v", input, err)
		}
	}
	if ref.Scheme != "" {
		return ref.ResolveReference(ref), nil
	}
	if base == nil {
		return nil, fmt.Errorf("Invalid URL %q: it is relative and no base URL was given", input)
	}
	b, err := resolveURL(*base, nil)
	if err != nil {
		return nil, fmt.Errorf("Invalid base URL: %v", err)
	}
	if b.Opaque != "" {
		return nil, fmt.Errorf("Invalid URL %q: base URL %q cannot be a base", input, *base)
	}
	return b.ResolveReference(ref), nil
}

// escapeQuery percent-encodes the bytes of a query that the URL standard's query percent-encode
// set holds (and "'" in special URLs).
func escapeQuery(q string, special bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c <= ' ' || c == '"' || c == '#' || c == '<' || c == '>' || c >= 0x7f || special && c == '\'' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
