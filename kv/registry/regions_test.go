package registry

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

// TestEdgeRegion: an edge region's registry reads and watches its mirror, and deploys,
// rolls back and stores code in the home region.
//
//	go test -race -run TestEdgeRegion -v ./kv/registry/ | grep staleness
func TestEdgeRegion(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	home := startNode(t, natsnode.Options{Region: "home", LeafListen: "127.0.0.1:0"})
	edge := startNode(t, natsnode.Options{Region: "edge", Home: "home", LeafRemotes: []string{home.LeafURL()}})
	hr := openRegistry(t, home)
	er := openRegistry(t, edge)
	ch, err := er.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); !ev.Ready {
		t.Fatalf("got %+v; want Ready", ev)
	}

	// Deployed in the home region, seen by the edge's watch.
	wasm := module(1, 5000)
	digest := putCode(t, hr, wasm)
	var lags []time.Duration
	for i := range 20 {
		f := deploy(t, hr, Function{Name: "fn", Digest: digest})
		deployed := time.Now()
		ev := next(t, ch)
		lags = append(lags, time.Since(deployed))
		if ev.Name != "fn" || ev.Function == nil || ev.Function.Version != uint64(i+1) || ev.Function.Version != f.Version {
			t.Fatalf("edge watch: got %+v; want fn@%d", ev, i+1)
		}
	}
	first, lags := lags[0], lags[1:] // the first also waits for the mirror to set up
	slices.Sort(lags)
	t.Logf("staleness of a deploy in the home region at the edge's watch, over %d deploys: p50 %s, max %s; the first deploy after the mirror was created: %s", len(lags), lags[len(lags)/2], lags[len(lags)-1], first)
	if f, err := er.Get(ctx, "fn"); err != nil || f.Version != 20 {
		t.Fatalf("edge Get: %+v, %v; want version 20", f, err)
	}
	if got, err := er.Code(ctx, digest); err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("edge Code: %d bytes, %v", len(got), err)
	}

	// Code stored and deployed through the edge land in the home region.
	wasm2 := module(2, 7000)
	digest2 := putCode(t, er, wasm2)
	if got, err := hr.Code(ctx, digest2); err != nil || !bytes.Equal(got, wasm2) {
		t.Fatalf("home Code of the edge's PutCode: %d bytes, %v", len(got), err)
	}
	f := deploy(t, er, Function{Name: "fn", Digest: digest2})
	if f.Version != 21 {
		t.Fatalf("edge Deploy: version %d; want 21", f.Version)
	}
	if cur, err := hr.Get(ctx, "fn"); err != nil || cur.Version != 21 {
		t.Fatalf("home Get after the edge's Deploy: %+v, %v; want version 21", cur, err)
	}
	if ev := next(t, ch); ev.Function == nil || ev.Function.Version != 21 {
		t.Fatalf("edge watch: got %+v; want fn@21", ev)
	}
	rb, err := er.Rollback(ctx, "fn", 0)
	if err != nil || rb.Version != 22 || rb.RollbackOf != 20 {
		t.Fatalf("edge Rollback: %+v, %v; want version 22, a copy of 20", rb, err)
	}
	if ev := next(t, ch); ev.Function == nil || ev.Function.Version != 22 || ev.Function.Digest != digest {
		t.Fatalf("edge watch: got %+v; want the rollback fn@22", ev)
	}
	if vs, err := er.Versions(ctx, "fn"); err != nil || len(vs) != 22 {
		t.Fatalf("edge Versions: %d, %v; want 22", len(vs), err)
	}

	// With the home region gone, the edge still reads; writes fail.
	home.Close()
	if f, err := er.Get(ctx, "fn"); err != nil || f.Version != 22 {
		t.Fatalf("edge Get with the home region down: %+v, %v", f, err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
	defer dcancel()
	if _, err := er.Deploy(dctx, Function{Name: "fn", Digest: digest}); err == nil {
		t.Fatal("edge Deploy succeeded with the home region down")
	} else if errors.Is(err, ErrNotFound) {
		t.Fatalf("edge Deploy with the home region down: %v; want an error that is not ErrNotFound", err)
	} else {
		t.Logf("edge Deploy with the home region down: %v", err)
	}
}
