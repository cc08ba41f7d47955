package gateway

import (
	"testing"

	"github.com/wispfn/wisp/kv/registry"
)

func testTable(fns ...registry.Function) *table {
	t := newTable()
	for _, f := range fns {
		prefix := f.Route
		if prefix == "" {
			prefix = "/" + f.Name
		}
		t = t.with(f.Name, &entry{meta: f, prefix: prefix})
	}
	return t
}

func TestLookup(t *testing.T) {
	tbl := testTable(
		registry.Function{Name: "hello"},
		registry.Function{Name: "api", Route: "/api/v1"},
		registry.Function{Name: "apiroot", Route: "/api"},
		registry.Function{Name: "site", Host: "example.com"},
	)
	tests := []struct {
		name, host, path string
		want             string
		prefix           int
	}{
		{"bare prefix", "", "/hello", "hello", 6},
		{"prefix slash", "", "/hello/", "hello", 6},
		{"sub path", "", "/hello/a/b", "hello", 6},
		{"not a segment boundary", "", "/helloworld", "", 0},
		{"longest prefix wins", "", "/api/v1/users", "api", 7},
		{"shorter prefix", "", "/api/v2/users", "apiroot", 4},
		{"host claims every path", "example.com:8080", "/hello", "site", 0},
		{"host without port", "example.com", "/x", "site", 0},
		{"unknown", "", "/nope", "", 0},
		{"root", "", "/", "", 0},
		{"empty", "", "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, n := tbl.lookup([]byte(tt.host), []byte(tt.path))
			got := ""
			if e != nil {
				got = e.meta.Name
			}
			if got != tt.want || n != tt.prefix {
				t.Errorf("lookup(%q, %q) = %q, %d; want %q, %d", tt.host, tt.path, got, n, tt.want, tt.prefix)
			}
		})
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tbl := testTable(registry.Function{Name: "hello"}, registry.Function{Name: "site", Host: "example.com"})
	host, path := []byte("127.0.0.1:8080"), []byte("/hello/a/b?x")
	if n := testing.AllocsPerRun(100, func() { tbl.lookup(host, path) }); n != 0 {
		t.Errorf("lookup allocates %v times; want 0", n)
	}
}

func TestTableConflict(t *testing.T) {
	tbl := testTable(registry.Function{Name: "a"}, registry.Function{Name: "b", Host: "b.example"})
	if err := tbl.conflict("c", "/a", ""); err == nil {
		t.Error("route /a of function a given to c")
	}
	if err := tbl.conflict("c", "/c", "b.example"); err == nil {
		t.Error("host of function b given to c")
	}
	if err := tbl.conflict("a", "/a", ""); err != nil {
		t.Errorf("redeploying a on its own route: %v", err)
	}
}

func TestCheckRoute(t *testing.T) {
	for _, r := range []string{"/x", "/api/v1", "/a-b_c.d"} {
		if err := checkRoute(r); err != nil {
			t.Errorf("checkRoute(%q) = %v; want nil", r, err)
		}
	}
	for _, r := range []string{"", "x", "/", "/x/", "//x", "/x?y", "/_wisp", "/_wisp/x", "/metrics", "/a b", "/1/2/3/4/5/6/7/8/9"} {
		if err := checkRoute(r); err == nil {
			t.Errorf("checkRoute(%q) = nil; want an error", r)
		}
	}
}

func TestCheckHost(t *testing.T) {
	for _, h := range []string{"", "example.com", "a.b.c"} {
		if err := checkHost(h); err != nil {
			t.Errorf("checkHost(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"Example.com", "example.com:80", "a/b", "a b"} {
		if err := checkHost(h); err == nil {
			t.Errorf("checkHost(%q) = nil; want an error", h)
		}
	}
}
