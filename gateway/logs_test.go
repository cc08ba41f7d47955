package gateway_test

import (
	"bufio"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/gateway"
	ringlog "github.com/wispfn/wisp/ring/provider/log"
)

// countedLogs is the real log provider, counting its live subscriptions.
type countedLogs struct {
	*ringlog.Provider
	live atomic.Int32
}

func (c *countedLogs) Subscribe(fn string) (<-chan ringlog.Line, func()) {
	ch, cancel := c.Provider.Subscribe(fn)
	c.live.Add(1)
	var once atomic.Bool
	return ch, func() {
		if once.CompareAndSwap(false, true) {
			c.live.Add(-1)
		}
		cancel()
	}
}

// A follower gets the header before any line, then lines as they come; one that leaves a quiet
// stream is let go without waiting for the next line.
func TestLogFollow(t *testing.T) {
	logs := &countedLogs{Provider: ringlog.New(ringlog.Config{})}
	s := startServer(t, t.TempDir(), 0, func(c *gateway.Config) { c.Logs = logs })
	s.mustDeploy("hello", "hello", "")

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /_wisp/logs/hello?follow=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("status line before any log line: %q %v", status, err)
	}
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		if l == "\r\n" {
			break
		}
	}
	logs.Publish(ringlog.Line{Time: time.Now(), Function: "hello", Stream: "log", Message: "first line"})
	var body strings.Builder
	for !strings.Contains(body.String(), "first line") {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for the line: %v (read %q)", err, body.String())
		}
		body.WriteString(l)
	}
	if n := logs.live.Load(); n != 1 {
		t.Fatalf("%d subscriptions while following; want 1", n)
	}
	conn.Close()
	deadline := time.Now().Add(15 * time.Second)
	for logs.live.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscription of a follower that left a quiet stream is still there after 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
