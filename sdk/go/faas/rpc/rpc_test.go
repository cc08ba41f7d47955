//go:build !wasip1

package rpc

import (
	"errors"
	"io"
	"testing"

	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall/fakehost"
)

func functions(t *testing.T) *fakehost.Host {
	return fakehost.New(t, map[uint32]fakehost.Handler{
		hostcall.ProviderRPC: func(p []byte) ([]byte, hostcall.Code, string) {
			d := hostcall.NewDecoder(p)
			fn, method, uri := d.Str(), d.Str(), d.Str()
			switch fn {
			case "missing":
				return nil, hostcall.CodeNotFound, `no such function: "missing"`
			case "deep":
				return nil, hostcall.CodeDepth, "call depth limit of 8 reached"
			}
			out := hostcall.AppendU32(nil, 201)
			out = hostcall.AppendU32(out, 0)
			return hostcall.AppendString(out, fn+" "+method+" "+uri), hostcall.CodeOK, ""
		},
	})
}

func TestCall(t *testing.T) {
	h := functions(t)
	req, err := NewRequest("POST", "/users/42?full=1", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := Call("users", req)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 201 || string(b) != "users POST /users/42?full=1" {
		t.Errorf("got %d %q", resp.StatusCode, b)
	}
	fakehost.CheckVector(t, "rpc post with header", hostcall.ProviderRPC, h.Submitted[0][1:])
	get, _ := NewRequest("GET", "/", nil)
	if _, err := Call("missing", get); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing function: %v", err)
	}
	if _, err := Start("deep", get).Wait(); !errors.Is(err, ErrDepth) {
		t.Errorf("deep chain: %v", err)
	}
	if _, err := NewRequest("GET", "no-slash", nil); err == nil {
		t.Error("NewRequest accepted a uri without a leading slash")
	}
}
