package http

import (
	"net/textproto"
	"reflect"
	"testing"
)

func TestCanonicalHeaderKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"content-type", "Content-Type"},
		{"CONTENT-TYPE", "Content-Type"},
		{"Content-Type", "Content-Type"},
		{"x-forwarded-for", "X-Forwarded-For"},
		{"www-authenticate", "Www-Authenticate"},
		{"a--b", "A--B"},
		{"-x", "-X"},
		{"", ""},
		{"user_agent", "User_agent"},
		{"bad key", "bad key"},
		{"naïve", "naïve"},
		{"x:y", "x:y"},
	} {
		if got := CanonicalHeaderKey(tc.in); got != tc.want {
			t.Errorf("CanonicalHeaderKey(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalHeaderKeyDoesNotAllocateWhenCanonical(t *testing.T) {
	key := "Content-Type"
	if n := testing.AllocsPerRun(100, func() { key = CanonicalHeaderKey(key) }); n != 0 {
		t.Errorf("got %v allocs; want 0", n)
	}
}

// FuzzCanonicalHeaderKey checks that CanonicalHeaderKey agrees with net/textproto, which the
// guest does not link.
func FuzzCanonicalHeaderKey(f *testing.F) {
	for _, s := range []string{"content-type", "X-ABC", "a b", "é", "a_b-c.d", "~`|^"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := CanonicalHeaderKey(s), textproto.CanonicalMIMEHeaderKey(s); got != want {
			t.Errorf("CanonicalHeaderKey(%q) = %q; net/textproto says %q", s, got, want)
		}
	})
}

func TestHeaderMethods(t *testing.T) {
	h := Header{}
	h.Set("content-type", "text/plain")
	h.Add("X-Multi", "1")
	h.Add("x-multi", "2")
	if got := h.Get("CONTENT-TYPE"); got != "text/plain" {
		t.Errorf("Get = %q; want text/plain", got)
	}
	if got := h.Values("x-MULTI"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("Values = %q; want [1 2]", got)
	}
	if got := h.Get("missing"); got != "" {
		t.Errorf("Get(missing) = %q; want empty", got)
	}
	c := h.Clone()
	c.Add("X-Multi", "3")
	h.Del("x-multi")
	if _, ok := h["X-Multi"]; ok {
		t.Error("Del left X-Multi")
	}
	if got := c.Values("X-Multi"); !reflect.DeepEqual(got, []string{"1", "2", "3"}) {
		t.Errorf("clone Values = %q; want [1 2 3]", got)
	}
	want := Header{"Content-Type": {"text/plain"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %v; want %v", h, want)
	}
}

func TestNewBody(t *testing.T) {
	b, err := NewBody([]byte("abc"))
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 8)
	n, _ := b.Read(p)
	if string(p[:n]) != "abc" {
		t.Errorf("Read = %q; want abc", p[:n])
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
