package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

// TestNATSLostWhileRunning stops the NATS server under a store on an external connection:
// operations fail fast with ErrUnavailable instead of hanging, and once the server is back
// the store works again and its watch starts over with OpReset.
func TestNATSLostWhileRunning(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := startNode(t, natsnode.Options{Dir: dir, Listen: "127.0.0.1:0"})
	url := srv.URL()
	client := startNode(t, natsnode.Options{URL: url, Logf: t.Logf})
	s := open(t, client, "faults", Options{})
	put(t, s, "k", "before")
	w, err := s.Watch(ctx, "", WatchOptions{UpdatesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, w, "ready =")

	srv.Close()
	for deadline := time.Now().Add(5 * time.Second); client.Connected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("client still connected 5s after the server stopped")
		}
	}
	ops := []struct {
		name string
		op   func() error
	}{
		{"get", func() error { _, err := s.Get(ctx, "k"); return err }},
		{"get many", func() error { _, err := s.GetMany(ctx, []string{"k"}); return err }},
		{"put", func() error { _, err := s.Put(ctx, "k", []byte("x"), 0); return err }},
		{"create", func() error { _, err := s.Create(ctx, "new", []byte("x"), 0); return err }},
		{"update", func() error { _, err := s.Update(ctx, "k", []byte("x"), 1, 0); return err }},
		{"delete", func() error { return s.Delete(ctx, "k", 0) }},
		{"keys", func() error { _, err := s.Keys(ctx, ""); return err }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.op()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s while NATS is down: %v; want ErrUnavailable", op.name, err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("%s while NATS is down took %s; want it to fail fast", op.name, d)
		}
	}

	srv2 := startNode(t, natsnode.Options{Dir: dir, Listen: strings.TrimPrefix(url, "nats://")})
	expect(t, w, "reset =", "ready =")
	// A write through the server's own node reaches the client's watch.
	put(t, open(t, srv2, "faults", Options{}), "k", "after")
	expect(t, w, "put k=after")
	if e, err := s.Get(ctx, "k"); err != nil || string(e.Value) != "after" {
		t.Fatalf("Get after reconnecting: %q, %v; want after", e.Value, err)
	}
}

// TestWatchEndsWhenNodeCloses: a watch's channel is closed when its node closes, even
// though the watcher's context is still live.
func TestWatchEndsWhenNodeCloses(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	s := open(t, n, "closing", Options{})
	w, err := s.Watch(context.Background(), "", WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, w, "ready =")
	n.Close()
	select {
	case _, ok := <-w:
		for ok {
			_, ok = <-w
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel still open 5s after the node closed")
	}
}
