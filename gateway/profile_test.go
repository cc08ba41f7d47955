package gateway_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	pprof "github.com/google/pprof/profile"
)

func TestProfileEndpoint(t *testing.T) {
	s := startServer(t, t.TempDir(), 0)
	s.mustDeploy("busy", "busy", "")

	t.Run("bad input", func(t *testing.T) {
		for _, tt := range []struct {
			name, path string
			hdr        map[string]string
			status     int
			msg        string
		}{
			{"zero seconds", "/_wisp/profile/busy?seconds=0", auth, 400, "seconds"},
			{"too many seconds", "/_wisp/profile/busy?seconds=61", auth, 400, "seconds"},
			{"seconds not a number", "/_wisp/profile/busy?seconds=abc", auth, 400, "seconds"},
			{"unknown function", "/_wisp/profile/nope?seconds=1", auth, 404, "nope"},
			{"no token", "/_wisp/profile/busy?seconds=1", nil, 401, "token"},
			{"wrong token", "/_wisp/profile/busy?seconds=1", map[string]string{"Authorization": "Bearer nope"}, 401, "token"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := s.do("GET", tt.path, nil, tt.hdr)
				if r.status != tt.status {
					t.Fatalf("%s: %d %s; want %d", tt.path, r.status, r.body, tt.status)
				}
				if msg, _ := r.json(t)["error"].(string); !strings.Contains(msg, tt.msg) {
					t.Errorf("%s: error %q; want it to mention %q", tt.path, msg, tt.msg)
				}
			})
		}
	})

	t.Run("profile under load, a second one refused", func(t *testing.T) {
		quit := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // requests of the CPU-heavy guest until the profile is back
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				if r := s.do("GET", "/busy/sieve?n=300000", nil, nil); r.status != 200 {
					t.Errorf("GET /busy/sieve: %d %s", r.status, r.body)
					return
				}
			}
		}()
		got := make(chan response, 1)
		go func() { got <- s.do("GET", "/_wisp/profile/busy?seconds=3", nil, auth) }()
		for !strings.Contains(s.logs.String(), `msg="function profile started" function=busy`) {
			time.Sleep(5 * time.Millisecond)
		}
		second := s.do("GET", "/_wisp/profile/busy?seconds=1", nil, auth)
		r := <-got
		close(quit)
		wg.Wait()
		if second.status != http.StatusConflict {
			t.Errorf("a second profile during the first: %d %s; want 409", second.status, second.body)
		} else if msg, _ := second.json(t)["error"].(string); !strings.Contains(msg, "already") {
			t.Errorf("409 error %q; want it to say a profile is already being taken", msg)
		}
		p := parseProfile(t, r)
		var sieve int64
		for _, smp := range p.Sample {
			for _, l := range smp.Location {
				if l.Line[0].Function.Name == "main.sieve" {
					sieve += smp.Value[0]
					break
				}
			}
		}
		if len(p.Sample) == 0 || sieve == 0 {
			t.Fatalf("%d samples, %d with main.sieve; want some of each", len(p.Sample), sieve)
		}
		if r.header.Get("X-Wisp-Profile-Samples") == "0" || r.header.Get("X-Wisp-Profile-Compile-Seconds") == "" {
			t.Errorf("headers %v; want the sample count and the compile time", r.header)
		}
	})

	t.Run("no request in the window", func(t *testing.T) {
		p := parseProfile(t, s.do("GET", "/_wisp/profile/busy?seconds=1", nil, auth))
		if len(p.Sample) != 0 {
			t.Fatalf("%d samples of a function nobody called; want none", len(p.Sample))
		}
	})
}

// parseProfile checks that r is a gzipped pprof profile and parses it.
func parseProfile(t *testing.T, r response) *pprof.Profile {
	t.Helper()
	if r.status != 200 || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("profile: %d %q %.200s; want 200 application/octet-stream", r.status, r.header.Get("Content-Type"), r.body)
	}
	if !bytes.HasPrefix(r.body, []byte{0x1f, 0x8b}) {
		t.Fatalf("profile body starts % x; want gzip", r.body[:min(2, len(r.body))])
	}
	p, err := pprof.ParseData(r.body)
	if err != nil {
		t.Fatalf("profile does not parse: %v", err)
	}
	return p
}
