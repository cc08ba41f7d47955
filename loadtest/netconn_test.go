package loadtest

import (
	"errors"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// TestBusyReadCaller sends requests on a connection whose reads spin (the cold scenario's
// --busy-poll): responses parse as usual, and a server that never answers ends in the
// request's deadline, not a hang.
func TestBusyReadCaller(t *testing.T) {
	u, _ := url.Parse(startHertz(t, hello))
	tg := &target{Config: Config{Timeout: 5 * time.Second, Method: "GET"}, addr: u.Host, host: u.Host}
	c := newConnCaller(tg, []byte("GET / HTTP/1.1\r\nHost: "+u.Host+"\r\n\r\n"))
	c.busy = true
	defer c.drop()
	for i := range 100 {
		if status, err := c.do(time.Now()); err != nil || status != 200 {
			t.Fatalf("request %d: status %d, %v", i, status, err)
		}
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // accepted, never answered
		}
	}()
	tg = &target{Config: Config{Timeout: 100 * time.Millisecond, Method: "GET"}, addr: silent.Addr().String()}
	c = newConnCaller(tg, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.busy = true
	start := time.Now()
	_, err = c.do(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("request to a silent server: %v; want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("request to a silent server returned after %v; want about its 100ms timeout", d)
	}
}
