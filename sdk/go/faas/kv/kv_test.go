//go:build !wasip1

package kv

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall/fakehost"
)

// store answers kv submissions from a map, decoding them as the host does.
func store(t *testing.T) (*fakehost.Host, map[string]string) {
	m := map[string]string{}
	h := fakehost.New(t, map[uint32]fakehost.Handler{
		hostcall.ProviderKV: func(p []byte) ([]byte, hostcall.Code, string) {
			d := hostcall.NewDecoder(p[1:])
			switch p[0] {
			case opGet:
				v, ok := m[d.Str()]
				if !ok {
					return []byte{0, 0, 0, 0, 0}, hostcall.CodeOK, ""
				}
				return hostcall.AppendString([]byte{1}, v), hostcall.CodeOK, ""
			case opPut:
				k := d.Str()
				if k == "" {
					return nil, hostcall.CodeInvalid, "empty key"
				}
				m[k] = d.Str()
				return nil, hostcall.CodeOK, ""
			case opDelete:
				delete(m, d.Str())
				return nil, hostcall.CodeOK, ""
			case opList:
				out := hostcall.AppendU32(nil, 2)
				out = hostcall.AppendString(hostcall.AppendString(out, "a"), "b")
				return append(out, 1), hostcall.CodeOK, ""
			}
			return nil, hostcall.CodeInvalid, "op"
		},
	})
	h.Auto = true
	return h, m
}

func TestOperations(t *testing.T) {
	_, m := store(t)
	if _, ok, err := Get("k"); ok || err != nil {
		t.Fatalf("Get of a missing key = %v %v", ok, err)
	}
	if err := Put("k", []byte("v"), 0); err != nil || m["k"] != "v" {
		t.Fatalf("Put = %v, store %v", err, m)
	}
	if v, ok, err := Get("k"); !ok || err != nil || string(v) != "v" {
		t.Fatalf("Get = %q %v %v", v, ok, err)
	}
	if err := Delete("k"); err != nil || len(m) != 0 {
		t.Fatalf("Delete = %v, store %v", err, m)
	}
	if keys, more, err := List("", 2); err != nil || !more || !reflect.DeepEqual(keys, []string{"a", "b"}) {
		t.Fatalf("List = %v %v %v", keys, more, err)
	}
	if err := Put("", nil, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Put with an empty key = %v; want ErrInvalid", err)
	}
}

func TestFutures(t *testing.T) {
	_, m := store(t)
	m["a"], m["b"] = "1", "2"
	fa, fb, fc := StartGet("a"), StartGet("b"), StartGet("c")
	for _, tc := range []struct {
		f    *GetFuture
		want string
		ok   bool
	}{{fa, "1", true}, {fb, "2", true}, {fc, "", false}} {
		if v, ok, err := tc.f.Wait(); err != nil || ok != tc.ok || string(v) != tc.want {
			t.Errorf("got %q %v %v; want %q %v", v, ok, err, tc.want, tc.ok)
		}
	}
}

func TestEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func()
	}{
		{"kv get", func() { Get("user.42") }},
		{"kv put with ttl", func() { Put("user.42", []byte("v"), 90*time.Second) }},
		{"kv put forever", func() { Put("k", nil, 0) }},
		{"kv delete", func() { Delete("user.42") }},
		{"kv list", func() { List("user.", 10) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := store(t)
			tc.op()
			fakehost.CheckVector(t, tc.name, hostcall.ProviderKV, h.Submitted[0][1:])
		})
	}
}
