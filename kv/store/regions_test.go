package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

// startRegions starts a home region and an edge region joined by a leaf node on loopback.
func startRegions(tb testing.TB) (home, edge *natsnode.Node) {
	tb.Helper()
	home = startNode(tb, natsnode.Options{Region: "home", LeafListen: "127.0.0.1:0"})
	edge = startNode(tb, natsnode.Options{Region: "edge", Home: "home", LeafRemotes: []string{home.LeafURL()}})
	return home, edge
}

// eventually retries f every millisecond until it succeeds or 10s pass.
func eventually(tb testing.TB, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func valueIs(s Store, key, want string) func() error {
	return func() error {
		e, err := s.Get(context.Background(), key)
		if err != nil {
			return err
		}
		if string(e.Value) != want {
			return fmt.Errorf("got %q; want %q", e.Value, want)
		}
		return nil
	}
}

// awaitPut receives events until the put of key at rev, and returns when it arrived.
func awaitPut(tb testing.TB, w <-chan Event, key string, rev uint64) time.Time {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w:
			if ev.Op == OpPut && ev.Key == key && ev.Revision == rev {
				return time.Now()
			}
		case <-timeout:
			tb.Fatalf("no put of %s@%d within 10s", key, rev)
		}
	}
}

// percentiles returns p50, p90 and the maximum of ds.
func percentiles(ds []time.Duration) (p50, p90, maxd time.Duration) {
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1]
}

// TestRegions writes in each region and reads in the other through the Store API, and
// measures the staleness: the time from a write's acknowledgement in one region to its
// arrival in the other region's watch.
//
//	go test -race -run TestRegions -v ./kv/store/ | grep staleness
func TestRegions(t *testing.T) {
	ctx := context.Background()
	home, edge := startRegions(t)
	es := open(t, edge, "geo", Options{}) // the edge creates the origin, then its mirror
	hs := open(t, home, "geo", Options{})
	ew, err := es.Watch(ctx, "", WatchOptions{UpdatesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	hw, err := hs.Watch(ctx, "", WatchOptions{UpdatesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, ew, "ready =")
	expect(t, hw, "ready =")

	// Home to edge.
	const writes = 200
	lags := make([]time.Duration, 0, writes)
	for i := range writes {
		key := fmt.Sprintf("home.%d", i)
		rev, err := hs.Put(ctx, key, []byte("v"), 0)
		acked := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		lags = append(lags, awaitPut(t, ew, key, rev).Sub(acked))
	}
	// The first write also waits for the mirror to set up its consumer in the home region.
	first := lags[0]
	p50, p90, maxLag := percentiles(lags[1:])
	t.Logf("staleness home→edge over %d writes: p50 %s, p90 %s, max %s; the first write after the mirror was created: %s", writes-1, p50, p90, maxLag, first)
	if err := valueIs(es, "home.0", "v")(); err != nil {
		t.Fatalf("edge Get of a home write after its watch event: %v", err)
	}

	// Edge to home: the write is acknowledged by the origin, so the home region reads it
	// at once; the edge reads it back when its mirror has it.
	lags = lags[:0]
	for i := range writes {
		key := fmt.Sprintf("edge.%d", i)
		rev, err := es.Put(ctx, key, []byte("v"), 0)
		acked := time.Now()
		if err != nil {
			t.Fatalf("Put in the edge region: %v", err)
		}
		if i == 0 {
			if err := valueIs(hs, key, "v")(); err != nil {
				t.Fatalf("home Get right after the edge's write: %v", err)
			}
		}
		lags = append(lags, awaitPut(t, ew, key, rev).Sub(acked))
		awaitPut(t, hw, key, rev)
	}
	p50, p90, maxLag = percentiles(lags)
	t.Logf("staleness edge→edge (write forwarded to the origin, read back from the mirror) over %d writes: p50 %s, p90 %s, max %s", writes, p50, p90, maxLag)

	// Revisions are the origin's in both regions: compare-and-set works from the edge.
	e, err := es.Get(ctx, "home.1")
	if err != nil {
		t.Fatal(err)
	}
	if he, err := hs.Get(ctx, "home.1"); err != nil || he.Revision != e.Revision {
		t.Fatalf("home revision %d, %v; edge revision %d: want equal", he.Revision, err, e.Revision)
	}
	rev, err := es.Update(ctx, "home.1", []byte("cas"), e.Revision, 0)
	if err != nil {
		t.Fatalf("Update from the edge: %v", err)
	}
	if _, err := es.Update(ctx, "home.1", []byte("stale"), e.Revision, 0); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("second Update from the edge at the old revision: %v; want ErrRevisionMismatch", err)
	}
	if _, err := es.Create(ctx, "home.1", []byte("x"), 0); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("Create from the edge of an existing key: %v; want ErrRevisionMismatch", err)
	}
	if _, err := es.Create(ctx, "made.at.edge", []byte("new"), 0); err != nil {
		t.Fatalf("Create from the edge: %v", err)
	}
	if err := es.Delete(ctx, "home.1", rev); err != nil {
		t.Fatalf("Delete from the edge: %v", err)
	}
	if _, err := hs.Get(ctx, "home.1"); err != ErrNotFound {
		t.Fatalf("home Get after the edge's Delete: %v; want ErrNotFound", err)
	}
	eventually(t, "edge sees its delete", func() error {
		if _, err := es.Get(ctx, "home.1"); err != ErrNotFound {
			return fmt.Errorf("got %v; want ErrNotFound", err)
		}
		return nil
	})
	eventually(t, "edge reads its create", valueIs(es, "made.at.edge", "new"))
	got, err := es.GetMany(ctx, []string{"home.2", "home.1", "edge.3", "nothing"})
	if err != nil {
		t.Fatalf("GetMany at the edge: %v", err)
	}
	if got[0].Revision == 0 || got[1].Revision != 0 || got[2].Revision == 0 || got[3].Revision != 0 {
		t.Fatalf("GetMany at the edge: revisions %d %d %d %d; want set, 0, set, 0", got[0].Revision, got[1].Revision, got[2].Revision, got[3].Revision)
	}
	keys, err := es.Keys(ctx, "made.")
	if err != nil || !slices.Equal(keys, []string{"made.at.edge"}) {
		t.Fatalf("Keys at the edge: %q, %v", keys, err)
	}

	// A key's ttl runs out in both regions.
	if _, err := es.Put(ctx, "brief", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Store{hs, es} {
		eventually(t, "ttl expiry in namespace of "+fmt.Sprint(s == es), func() error {
			if _, err := s.Get(ctx, "brief"); err != ErrNotFound {
				return fmt.Errorf("got %v; want ErrNotFound", err)
			}
			return nil
		})
	}

	// The home region goes away: the edge keeps serving reads from its mirror, and writes
	// fail with ErrUnavailable instead of hanging.
	home.Close()
	if err := valueIs(es, "made.at.edge", "new")(); err != nil {
		t.Fatalf("edge read with the home region down: %v", err)
	}
	start := time.Now()
	if _, err := es.Put(ctx, "k", []byte("v"), 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("edge write with the home region down: %v; want ErrUnavailable", err)
	}
	t.Logf("edge write with the home region down failed after %s", time.Since(start).Round(time.Millisecond))
	if _, err := es.Create(ctx, "k2", []byte("v"), 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("edge create with the home region down: %v; want ErrUnavailable", err)
	}
}

// TestEdgeOpenWithHomeDown: an edge region whose mirror exists opens it without the home
// region; one that would have to create it says that the home region is unreachable.
func TestEdgeOpenWithHomeDown(t *testing.T) {
	ctx := context.Background()
	home, edge := startRegions(t)
	open(t, edge, "early", Options{})
	home.Close()
	s := open(t, edge, "early", Options{})
	if _, err := s.Get(ctx, "k"); err != ErrNotFound {
		t.Fatalf("Get from the mirror with the home region down: %v; want ErrNotFound", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err := Open(ctx, edge, "late", Options{})
	if err == nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open of a new namespace with the home region down: %v; want ErrUnavailable", err)
	}
	t.Logf("open: %v", err)
}
