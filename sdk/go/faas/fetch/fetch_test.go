//go:build !wasip1

package fetch

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall/fakehost"
)

// server answers every fetch with 200, an X-Url header and the request's body, the way the host
// encodes responses.
func server(t *testing.T) *fakehost.Host {
	return fakehost.New(t, map[uint32]fakehost.Handler{
		hostcall.ProviderFetch: func(p []byte) ([]byte, hostcall.Code, string) {
			d := hostcall.NewDecoder(p)
			method, url := d.Str(), d.Str()
			for range d.Count(8) {
				d.Str()
				d.Str()
			}
			body := d.Bytes()
			if url == "https://denied.example/" {
				return nil, hostcall.CodeDenied, "not on the allow-list"
			}
			out := hostcall.AppendU32(nil, 200)
			out = hostcall.AppendU32(out, 2)
			out = hostcall.AppendString(hostcall.AppendString(out, "x-url"), url)
			out = hostcall.AppendString(hostcall.AppendString(out, "x-method"), method)
			return hostcall.AppendBytes(out, body), hostcall.CodeOK, ""
		},
	})
}

func TestDo(t *testing.T) {
	server(t)
	req, err := NewRequest("POST", "https://api.example/x?y=1", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Url") != "https://api.example/x?y=1" ||
		resp.Header.Get("X-Method") != "POST" || string(body) != "hello" {
		t.Errorf("got %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if _, err := Get("https://denied.example/"); !errors.Is(err, ErrDenied) {
		t.Errorf("denied fetch: %v; want ErrDenied", err)
	}
	if _, err := NewRequest("GET", "/relative", nil); err == nil {
		t.Error("NewRequest accepted a relative url")
	}
}

func TestConcurrent(t *testing.T) {
	h := server(t)
	var fs []*Future
	for _, u := range []string{"https://a.example/", "https://b.example/", "https://c.example/"} {
		req, _ := NewRequest("GET", u, nil)
		fs = append(fs, Start(req))
	}
	h.Release(true)
	for i, f := range fs {
		resp, err := f.Wait()
		if err != nil || resp.Header.Get("X-Url") != "https://"+string(rune('a'+i))+".example/" {
			t.Errorf("future %d: %v %v", i, resp, err)
		}
	}
	if h.Waits != 1 {
		t.Errorf("three responses took %d waits; want 1", h.Waits)
	}
}

func TestEncoding(t *testing.T) {
	h := server(t)
	req, _ := NewRequest("PUT", "https://api.example/v1?q=1", []byte("body"))
	req.Header.Set("Content-Type", "text/plain")
	c := &Client{Timeout: 1500 * time.Millisecond}
	if _, err := c.Do(req); err != nil {
		t.Fatal(err)
	}
	fakehost.CheckVector(t, "fetch put with header and timeout", hostcall.ProviderFetch, h.Submitted[0][1:])
	// A body that is not an in-memory one is read through io.Reader.
	req, _ = NewRequest("POST", "https://api.example/", nil)
	req.Body = io.NopCloser(io.LimitReader(zeros{}, 3))
	resp, err := Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "\x00\x00\x00" {
		t.Errorf("streamed body sent as %q", b)
	}
	if _, err := Do(&http.Request{}); err == nil {
		t.Error("a request without a URL was sent")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
