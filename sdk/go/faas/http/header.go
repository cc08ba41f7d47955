package http

// Header maps header names to their values, like net/http's Header. The methods canonicalize the
// key they are given; direct map access does not.
type Header map[string][]string

// Get returns the first value of key, or "".
func (h Header) Get(key string) string {
	if v := h[CanonicalHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns all values of key. The returned slice is not a copy.
func (h Header) Values(key string) []string {
	return h[CanonicalHeaderKey(key)]
}

// Set replaces the values of key with value.
func (h Header) Set(key, value string) {
	h[CanonicalHeaderKey(key)] = []string{value}
}

// Add appends value to the values of key.
func (h Header) Add(key, value string) {
	key = CanonicalHeaderKey(key)
	h[key] = append(h[key], value)
}

// Del removes all values of key.
func (h Header) Del(key string) {
	delete(h, CanonicalHeaderKey(key))
}

// Clone returns a copy of h (nil for nil).
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	n := 0
	for _, v := range h {
		n += len(v)
	}
	all := make([]string, 0, n)
	c := make(Header, len(h))
	for k, v := range h {
		all = append(all, v...)
		c[k] = all[len(all)-len(v) : len(all) : len(all)]
	}
	return c
}

// CanonicalHeaderKey returns the canonical form of a header name: the first letter and each
// letter after a hyphen upper case, the rest lower case ("content-type" → "Content-Type"), as
// net/http does. A name holding a byte that is not valid in a header name is returned unchanged.
// It allocates only when s is not canonical already.
func CanonicalHeaderKey(s string) string {
	upper := true
	canonical := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isTokenByte(c) {
			return s
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		return s
	}
	b := []byte(s)
	upper = true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return string(b)
}

// isTokenByte reports whether c may appear in a header name (an RFC 9110 token).
func isTokenByte(c byte) bool {
	const mask = (1<<10-1)<<'0' | (1<<26-1)<<'a' | (1<<26-1)<<'A' |
		1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' | 1<<'\'' | 1<<'*' |
		1<<'+' | 1<<'-' | 1<<'.' | 1<<'^' | 1<<'_' | 1<<'`' | 1<<'|' | 1<<'~'
	const lo, hi = uint64(mask & (1<<64 - 1)), uint64(mask >> 64)
	if c < 64 {
		return lo&(1<<c) != 0
	}
	return c < 128 && hi&(1<<(c-64)) != 0
}
