package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/store"
)

// waitDisconnected waits until n notices that its server is gone.
func waitDisconnected(t *testing.T, n *natsnode.Node) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.Connected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still connected 5s after the server stopped")
		}
	}
}

// TestHitsWhileNATSDownLastTTL: with NATS gone, cached entries are served until their TTL
// and no longer; misses fail fast.
func TestHitsWhileNATSDownLastTTL(t *testing.T) {
	ctx := context.Background()
	srv := startNode(t, natsnode.Options{Listen: "127.0.0.1:0"})
	client := startNode(t, natsnode.Options{URL: srv.URL()})
	s := openStore(t, client, "outage")
	put(t, s, "k", "v")
	const ttl = 500 * time.Millisecond
	c := newCache(t, s, Options{TTL: ttl})
	loaded := time.Now()
	get(t, c, "k")

	srv.Close()
	waitDisconnected(t, client)
	if got := get(t, c, "k"); got != "v" {
		t.Fatalf("hit with NATS down: %q; want v", got)
	}
	if _, err := c.Get(ctx, "other"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("miss with NATS down: %v; want ErrUnavailable", err)
	}
	time.Sleep(time.Until(loaded.Add(ttl + 50*time.Millisecond)))
	if _, err := c.Get(ctx, "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get past the TTL with NATS down: %v; want ErrUnavailable, not the old value", err)
	}
}

// TestReconnectDropsEverything: a change made while this node was disconnected is never
// reported by its watch, so the cache drops every entry when the connection comes back.
func TestReconnectDropsEverything(t *testing.T) {
	dir := t.TempDir()
	srv := startNode(t, natsnode.Options{Dir: dir, Listen: "127.0.0.1:0"})
	addr := strings.TrimPrefix(srv.URL(), "nats://")
	client := startNode(t, natsnode.Options{URL: srv.URL(), Logf: t.Logf})
	s := openStore(t, client, "reconnect")
	put(t, s, "k", "before")
	c := newCache(t, s, Options{TTL: time.Hour, Logf: t.Logf})
	if got := get(t, c, "k"); got != "before" {
		t.Fatalf("got %q; want before", got)
	}

	srv.Close()
	waitDisconnected(t, client)
	// The server comes back and the key changes before this client reconnects (it waits a
	// second between attempts): no watch of this client is there to see it.
	srv2 := startNode(t, natsnode.Options{Dir: dir, Listen: addr})
	put(t, openStore(t, srv2, "reconnect"), "k", "during")
	if got := get(t, c, "k"); got != "before" {
		t.Fatalf("hit before reconnecting: %q; want the cached before", got)
	}
	eventually(t, "cache reset after reconnecting", func() error {
		if c.resets.Get() == 0 {
			return errors.New("no reset yet")
		}
		return nil
	})
	eventually(t, "read after reconnecting", reads(c, "k", "during"))
	// Caching works again.
	misses := c.misses.Get()
	get(t, c, "k")
	eventually(t, "cached again", func() error {
		get(t, c, "k")
		if c.misses.Get()-misses > 3 {
			return errors.New("still missing")
		}
		return nil
	})
}
