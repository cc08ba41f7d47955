package natsnode

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// startRegions starts a home region "home" with a leaf listener on loopback and an edge region
// "edge" joined to it as a leaf node.
func startRegions(t *testing.T) (home, edge *Node) {
	t.Helper()
	home = startEmbedded(t, Options{Region: "home", LeafListen: "127.0.0.1:0"})
	if u := home.LeafURL(); !strings.HasPrefix(u, "nats-leaf://127.0.0.1:") || strings.HasSuffix(u, ":0") {
		t.Fatalf("LeafURL() = %q; want nats-leaf://127.0.0.1:<port>", u)
	}
	edge = startEmbedded(t, Options{Region: "edge", Home: "home", LeafRemotes: []string{home.LeafURL()}})
	return home, edge
}

// eventually retries f until it succeeds or 10s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEdgeMirrorsHome(t *testing.T) {
	ctx := context.Background()
	home, edge := startRegions(t)
	if home.Edge() || !edge.Edge() || edge.Home() != "home" || edge.Region() != "edge" {
		t.Fatalf("home.Edge()=%v edge.Edge()=%v edge.Home()=%q; want false, true, \"home\"", home.Edge(), edge.Edge(), edge.Home())
	}
	cfg := jetstream.KeyValueConfig{Bucket: "region_test", History: 2}
	// The edge opens first: it creates the origin in the home region, then its mirror.
	eb, err := edge.OpenKeyValue(ctx, cfg)
	if err != nil {
		t.Fatalf("edge OpenKeyValue: %v", err)
	}
	if !eb.Mirrored() || eb.WritePrefix != "$JS.home.API.$KV.region_test." {
		t.Fatalf("edge bucket: Mirrored()=%v WritePrefix=%q", eb.Mirrored(), eb.WritePrefix)
	}
	hb, err := home.OpenKeyValue(ctx, cfg)
	if err != nil {
		t.Fatalf("home OpenKeyValue: %v", err)
	}
	if hb.Mirrored() || hb.WritePrefix != "$KV.region_test." {
		t.Fatalf("home bucket: Mirrored()=%v WritePrefix=%q", hb.Mirrored(), hb.WritePrefix)
	}

	// Written in the home region, read in the edge region.
	rev, err := hb.Read.PutString(ctx, "k", "from-home")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "read home's write in the edge region", func() error {
		e, err := eb.Read.Get(ctx, "k")
		if err != nil {
			return err
		}
		if string(e.Value()) != "from-home" || e.Revision() != rev {
			return errors.New("got " + string(e.Value()))
		}
		return nil
	})

	// Written in the edge region (published to the origin), read in both.
	if _, err := edge.JetStream().Publish(ctx, eb.WritePrefix+"k", []byte("from-edge")); err != nil {
		t.Fatalf("write from the edge: %v", err)
	}
	e, err := hb.Read.Get(ctx, "k")
	if err != nil || string(e.Value()) != "from-edge" {
		t.Fatalf("home after edge write: %v, %v; want from-edge", e, err)
	}
	eventually(t, "read the edge's own write back from its mirror", func() error {
		e, err := eb.Read.Get(ctx, "k")
		if err != nil {
			return err
		}
		if string(e.Value()) != "from-edge" {
			return errors.New("got " + string(e.Value()))
		}
		return nil
	})
	origin, err := eb.Origin(ctx)
	if err != nil {
		t.Fatalf("Origin: %v", err)
	}
	if e, err := origin.Get(ctx, "k"); err != nil || string(e.Value()) != "from-edge" {
		t.Fatalf("origin through the leaf: %v, %v", e, err)
	}

	// Reopening uses the existing buckets.
	if _, err := edge.OpenKeyValue(ctx, cfg); err != nil {
		t.Fatalf("edge reopen: %v", err)
	}
}

func TestRegionOptionsRejected(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"bad region", Options{Dir: "x", Region: "Home"}, `invalid region "Home"`},
		{"bad home", Options{Dir: "x", Region: "eu", Home: "a.b"}, `home: invalid region "a.b"`},
		{"home without region", Options{Dir: "x", Home: "us"}, "need this node's own region"},
		{"leaf listener without region", Options{Dir: "x", LeafListen: "127.0.0.1:0"}, "need this node's own region"},
		{"edge without remotes", Options{Dir: "x", Region: "eu", Home: "us"}, "needs the home region \"us\"'s leaf-node URL"},
		{"remotes on home", Options{Dir: "x", Region: "us", LeafRemotes: []string{"127.0.0.1:7422"}}, "is the home region, which has no leaf remotes"},
		{"leaf with url", Options{URL: "nats://127.0.0.1:1", Region: "us", LeafListen: "127.0.0.1:0"}, "configure them on that server"},
		{"bad remote", Options{Dir: "x", Region: "eu", Home: "us", LeafRemotes: []string{"nats-leaf://nowhere"}}, `invalid leaf remote "nats-leaf://nowhere"`},
		{"bad leaf listen", Options{Dir: "x", Region: "us", LeafListen: "nowhere"}, `leaf: invalid NATS listen address "nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Start(context.Background(), tt.o)
			if err == nil {
				n.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestExternalRegionMustMatchDomain(t *testing.T) {
	n := startEmbedded(t, Options{Listen: "127.0.0.1:0", Region: "us"})
	ext, err := Start(context.Background(), Options{URL: n.URL(), Region: "us"})
	if err != nil {
		t.Fatalf("Start external in the server's region: %v", err)
	}
	ext.Close()
	_, err = Start(context.Background(), Options{URL: n.URL(), Region: "eu", Home: "us"})
	if err == nil || !strings.Contains(err.Error(), `serves JetStream domain "us", not region "eu"`) {
		t.Fatalf("Start external in another region: %v; want a domain mismatch", err)
	}
}
