package faas

import (
	"net/url"
	"reflect"
	"testing"
)

var uris = []string{
	"/", "/a/b", "/a/b?x=1&y=2", "/a?", "/?", "/a/b/", "//double/slash", "/a%20b", "/a b",
	"/caf\u00e9", "/a!b", "/a'b(c)*", "/a#frag", "/a?q#f", "/a?b=%zz", "/%zz", "/a\x00b",
	"/a?b\x7f", "relative", "", "*", "/a;b=c,d:e@f$g&h+i", "/~user/.x_y-z", "/a?x=1?y=2",
	"/%2F", "/a%2fb?c", "/\u00ff?\u00ff", "/a<b>", "/a?b c", "http://host/p", "/a\tb",
}

// The fast path must give exactly what url.ParseRequestURI gives, or the same error.
func TestParseRequestURIMatchesNetURL(t *testing.T) {
	for _, uri := range uris {
		checkURI(t, uri)
	}
}

func FuzzParseRequestURI(f *testing.F) {
	for _, uri := range uris {
		f.Add(uri)
	}
	f.Fuzz(checkURI)
}

func checkURI(t *testing.T, uri string) {
	want, werr := url.ParseRequestURI(uri)
	var got url.URL
	gerr := parseRequestURI(&got, uri)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: error %v; url.ParseRequestURI: %v", uri, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, *want) {
		t.Fatalf("%q: got %#v; url.ParseRequestURI: %#v", uri, got, *want)
	}
}

func TestParseRequestURIDoesNotAllocate(t *testing.T) {
	var u url.URL
	if n := testing.AllocsPerRun(100, func() { _ = parseRequestURI(&u, "/a/b?x=1") }); n != 0 {
		t.Errorf("%v allocations; want 0", n)
	}
}
