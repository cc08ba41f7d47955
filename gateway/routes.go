package gateway

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/pool"
)

// entry is the live state of one function: its current metadata and compiled version (nil
// when the function runs only on the nodes of another pool).
// Entries are immutable once published in a table; a deploy publishes a new entry.
type entry struct {
	meta   registry.Function
	fn     *pool.Function
	stats  *fnStats
	prefix string // path prefix, "/NAME" unless the function set its own route
}

// table is an immutable routing snapshot, swapped atomically on every change, so the request
// path reads it without locks.
type table struct {
	byName   map[string]*entry
	byPrefix map[string]*entry
	byHost   map[string]*entry
	depth    int // most path segments in any prefix
}

func newTable() *table {
	return &table{byName: map[string]*entry{}, byPrefix: map[string]*entry{}, byHost: map[string]*entry{}}
}

// with returns a copy of t with e added (replacing the entry of the same name), or with the
// entry of name removed when e is nil.
func (t *table) with(name string, e *entry) *table {
	n := newTable()
	for k, v := range t.byName {
		if k != name {
			n.add(v)
		}
	}
	if e != nil {
		n.add(e)
	}
	return n
}

func (t *table) add(e *entry) {
	t.byName[e.meta.Name] = e
	t.byPrefix[e.prefix] = e
	if e.meta.Host != "" {
		t.byHost[e.meta.Host] = e
	}
	if d := strings.Count(e.prefix, "/"); d > t.depth {
		t.depth = d
	}
}

// conflict reports whether a function other than name already claims prefix or host.
func (t *table) conflict(name, prefix, host string) error {
	if e, ok := t.byPrefix[prefix]; ok && e.meta.Name != name {
		return fmt.Errorf("route %q is taken by function %q", prefix, e.meta.Name)
	}
	if e, ok := t.byHost[host]; host != "" && ok && e.meta.Name != name {
		return fmt.Errorf("host %q is taken by function %q", host, e.meta.Name)
	}
	return nil
}

// lookup finds the function for a request. A function that claims the request's host gets
// every path on it (prefix length 0); otherwise the longest route prefix that ends on a
// segment boundary wins. It does not allocate.
func (t *table) lookup(host, path []byte) (*entry, int) {
	if len(t.byHost) > 0 && len(host) > 0 {
		if e := t.byHost[string(hostOnly(host))]; e != nil {
			return e, 0
		}
	}
	// Candidate prefixes end just before a '/' or at the end of the path, at most depth segments deep.
	end := 0
	segs := 0
	var cands [8]int
	n := 0
	for i := 1; i <= len(path) && segs < t.depth; i++ {
		if i == len(path) || path[i] == '/' {
			segs++
			end = i
			if n < len(cands) {
				cands[n] = end
				n++
			}
		}
	}
	for j := n - 1; j >= 0; j-- {
		if e := t.byPrefix[string(path[:cands[j]])]; e != nil {
			return e, cands[j]
		}
	}
	return nil, 0
}

// hostOnly strips a port from a Host header value. Host names are matched case-sensitively
// against the lower-case names functions claim; clients send them lower-case in practice.
func hostOnly(h []byte) []byte {
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && !bytes.Contains(h[i:], []byte("]")) {
		return h[:i]
	}
	return h
}

// maxRouteDepth bounds how many segments a route prefix may have (lookup's candidate array).
const maxRouteDepth = 8

// checkRoute validates a route prefix given at deploy time.
func checkRoute(route string) error {
	switch {
	case route == "" || route[0] != '/':
		return fmt.Errorf("route %q must start with /", route)
	case route == "/":
		return fmt.Errorf("route %q would shadow every function; claim a host instead", route)
	case strings.HasSuffix(route, "/"):
		return fmt.Errorf("route %q must not end with /", route)
	case strings.Contains(route, "//") || strings.ContainsAny(route, "?#% \t\r\n"):
		return fmt.Errorf("route %q may hold only path segments (no //, ?, #, %%, spaces)", route)
	case route == "/metrics" || route == adminPrefix || strings.HasPrefix(route, adminPrefix+"/"):
		return fmt.Errorf("route %q is reserved by Wisp", route)
	case strings.Count(route, "/") > maxRouteDepth:
		return fmt.Errorf("route %q has more than %d segments", route, maxRouteDepth)
	}
	return nil
}

// checkHost validates a host name claimed at deploy time.
func checkHost(host string) error {
	if host == "" {
		return nil
	}
	if len(host) > 253 || strings.ToLower(host) != host || strings.ContainsAny(host, ":/ \t\r\n") {
		return fmt.Errorf("host %q must be a lower-case DNS name without port", host)
	}
	return nil
}
